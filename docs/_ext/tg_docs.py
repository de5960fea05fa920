"""Directives of the tg_samplenet documentation.

- ``.. api-package:: tg_samplenet.ops``: a package's docstring, a summary table of every name
  in its ``__all__``, and the documentation of each name this package is the home of (a name
  re-exported from a deeper documented package links there instead of being documented
  twice).
- ``.. command-help:: sample``: the ``tg-samplenet`` command line's ``--help`` text (no
  argument: the top level), taken from the parser at build time.
- ``.. run-record:: classification/results.json``: the command, data, machine, versions and
  date of a run, from the metadata an example or benchmark writes beside its results.
- ``.. markdown-tables:: classification/results.md``: the tables and notes of a generated
  ``results.md`` (pipe tables, paragraphs, bullets, headings, inline code and bold), and
  with ``:figure: path.png`` that figure where the run wrote one.

Paths are relative to the page. Generated content is built as docutils nodes, not as text to
parse, so a table cell can hold any characters. A missing file is a warning (an error
under ``sphinx-build -W``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pprint
import re
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

# The packages whose __all__ the API reference documents, each on its own page. A name is
# documented once, in the deepest of these that exports it (InputError: ops.checks).
API_PACKAGES = (
    "tg_samplenet",
    "tg_samplenet.ops",
    "tg_samplenet.ops.checks",
    "tg_samplenet.nn",
    "tg_samplenet.losses",
    "tg_samplenet.temperature",
    "tg_samplenet.transforms",
    "tg_samplenet.io",
    "tg_samplenet.training",
    "tg_samplenet.training.distributed",
    "tg_samplenet.models",
    "tg_samplenet.datasets",
)


def public_names(package: str) -> list[str]:
    module = importlib.import_module(package)
    return list(getattr(module, "__all__", ()))


def home(package: str, name: str) -> str:
    """The documented package that is the home of :obj:`package.name`."""
    obj = getattr(importlib.import_module(package), name)
    exporters = [
        other
        for other in API_PACKAGES
        if name in public_names(other) and getattr(importlib.import_module(other), name) is obj
    ]
    return max(exporters, key=lambda other: other.count("."))


def _attribute_comment(obj, name: str) -> list[str]:
    # A module-level constant's `#:` comment, from the module that defines it.
    for modname, module in list(sys.modules.items()):
        if not modname.startswith("tg_samplenet") or getattr(module, name, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # a module without source
            continue
        if ("", name) in docs:
            return list(docs[("", name)])
    return []


# Words after which a period does not end the sentence ("Eq. (2)", "Dovrat et al., 2019").
_ABBREVIATIONS = ("Eq", "Eqs", "al", "e.g", "i.e", "vs", "cf", "Fig", "Figs")


def first_sentence(doc: list[str]) -> str:
    """The summary of a docstring: its first sentence, within its first paragraph."""
    stanza = []
    for line in doc:
        if not line.strip():
            if stanza:
                break
            continue
        stanza.append(line.strip())
    text = " ".join(stanza)
    for end in re.finditer(r"\.(?=\s|$)", text):
        words = text[: end.start()].split()
        if words and words[-1].lstrip("(") not in _ABBREVIATIONS:
            return text[: end.end()]
    return text.rstrip(",;:") + ("" if text.endswith(".") else " ...")


def _value(obj) -> list[str]:
    # A constant's value, one entry of a dict per line.
    if isinstance(obj, dict):
        return ["{", *(f"    {key!r}: {value!r}," for key, value in obj.items()), "}"]
    return pprint.pformat(obj, width=88).splitlines()


class ApiPackage(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        names = public_names(package)
        module = importlib.import_module(package)
        lines = [f".. automodule:: {package}", "   :no-members:", ""]
        if names:
            # One row per name, linked by its full name to the page that documents it.
            lines += [".. list-table::", "   :widths: 35 65", ""]
            for name in names:
                lines += [f"   * - :py:obj:`~{home(package, name)}.{name}`"]
                lines += [f"     - {self._summary(getattr(module, name), name)}"]
            lines.append("")
        for name in names:
            if home(package, name) != package:
                continue
            obj = getattr(module, name)
            target = f"{package}.{name}"
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                lines += [f".. autoexception:: {target}", "   :show-inheritance:", ""]
            elif inspect.isclass(obj):
                lines += [f".. autoclass:: {target}", "   :members:", "   :show-inheritance:", ""]
            elif callable(obj):
                lines += [f".. autofunction:: {target}", ""]
            else:
                lines += [f".. py:data:: {name}", f"   :module: {package}", ""]
                lines += [f"   {line}" for line in _attribute_comment(obj, name)] + [""]
                lines += ["   .. code-block:: python", ""]
                lines += [f"      {line}" for line in _value(obj)] + [""]
        return self._parse(lines)

    def _summary(self, obj, name: str) -> str:
        if inspect.isclass(obj) or callable(obj):
            doc = (inspect.getdoc(obj) or "").splitlines()
        else:
            doc = _attribute_comment(obj, name)
        return first_sentence(doc)

    def _parse(self, lines: list[str]) -> list[nodes.Node]:
        container = nodes.container()
        source = self.get_source_info()[0]
        content = StringList(lines, source=f"{source} (api-package)")
        nested_parse_with_titles(self.state, content, container)
        return container.children


class CommandHelp(SphinxDirective):
    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        from tg_samplenet.cli.main import build_parser

        parser = build_parser()
        if self.arguments:
            commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = commands.choices[self.arguments[0]]
        previous = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "88"  # the same wrapping on every machine
        try:
            text = parser.format_help()
        finally:
            if previous is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = previous
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def _page_file(directive: SphinxDirective, relative: str) -> Path:
    page = Path(directive.env.doc2path(directive.env.docname)).parent
    path = (page / relative).resolve()
    directive.env.note_dependency(str(path))
    return path


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


class RunRecord(SphinxDirective):
    required_arguments = 1
    option_spec = {"note": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        path = _page_file(self, self.arguments[0])
        if not path.is_file():
            logger.warning(f"run-record: no file {path}", location=self.get_location())
            return []
        record = json.loads(path.read_text())
        fields = []

        def field(name: str, *parts: nodes.Node | str):
            body = nodes.paragraph()
            for part in parts:
                body += nodes.Text(part) if isinstance(part, str) else part
            fields.append(nodes.field("", nodes.field_name(name, name), nodes.field_body("", body)))

        command = record.get("command")
        if command:
            field("Command", nodes.literal(command, command))
        data = record.get("dataset")
        if data:
            data = {
                "synthetic": "the built-in procedural shapes",
                "h5": "point clouds in the paper's HDF5 layout",
                "modelnet10": "ModelNet10 meshes",
                "modelnet40": "ModelNet40 meshes",
                "shapenet": "ShapeNetCore point clouds",
            }.get(data, data)
            evaluated = record.get("evaluated_on")
            count = record.get("num_evaluated")
            text = data
            if evaluated == "val":
                share = record.get("val_fraction")
                text += f", evaluated on a seeded, class-stratified hold-out ({share:.0%})"
            elif evaluated:
                text += f", evaluated on the {evaluated} split"
            if count:
                text += f" of {count} clouds"
            field("Data", text)
        profile, seed = record.get("profile"), record.get("seed")
        if profile is not None:
            field("Profile", f"{profile}, seed {seed}" if seed is not None else profile)
        machine = record.get("machine") or {}
        if machine:
            threads = machine.get("torch_threads", "?")
            text = (
                f"{machine.get('cpu_model', 'unknown CPU')}, "
                f"{machine.get('usable_cores', '?')} usable cores, "
                f"{threads} torch thread{'' if threads == 1 else 's'}, "
                f"device {machine.get('device', record.get('device', '?'))}"
            )
            load = machine.get("load_average")
            if load:
                text += f"; load average {load[0]:.1f} at the start"
            field("Machine", text)
        versions = record.get("versions") or {}
        if versions:
            field(
                "Versions",
                ", ".join(
                    f"{name} {version}" for name, version in versions.items() if version is not None
                ),
            )
        if record.get("date"):
            field("Date", record["date"].replace("T", " ").split("+")[0] + " UTC")
        if record.get("seconds") is not None:
            field("Process time", _duration(record["seconds"]) + " (the process that wrote it)")
        if "note" in self.options:
            field("Note", self.options["note"])
        return [nodes.field_list("", *fields)]


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


def _inline(text: str) -> list[nodes.Node]:
    out: list[nodes.Node] = []
    at = 0
    for match in _INLINE.finditer(text):
        if match.start() > at:
            out.append(nodes.Text(text[at : match.start()]))
        code, bold = match.groups()
        out.append(nodes.literal(code, code) if code is not None else nodes.strong(bold, bold))
        at = match.end()
    if at < len(text):
        out.append(nodes.Text(text[at:]))
    return out


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(rows: list[list[str]]) -> nodes.table:
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    table = nodes.table()
    group = nodes.tgroup(cols=width)
    table += group
    for _ in range(width):
        group += nodes.colspec(colwidth=1)

    def row_node(cells: list[str]) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph("", "", *_inline(cell))
            row += entry
        return row

    head = nodes.thead()
    head += row_node(rows[0])
    body = nodes.tbody()
    for cells in rows[1:]:
        body += row_node(cells)
    group += head
    group += body
    return table


def markdown_nodes(text: str) -> list[nodes.Node]:
    """The nodes of a generated Markdown report: pipe tables, bullets, headings, paragraphs."""
    out: list[nodes.Node] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                cells = _cells(lines[i])
                if not all(re.fullmatch(r":?-{3,}:?", cell) for cell in cells):
                    rows.append(cells)
                i += 1
            out.append(_table(rows))
        elif line.startswith("#"):
            title = line.lstrip("#").strip()
            out.append(nodes.rubric("", "", *_inline(title)))
            i += 1
        elif line.startswith("- "):
            items = nodes.bullet_list()
            while i < len(lines) and lines[i].startswith("- "):
                item = lines[i][2:]
                i += 1
                while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                    item += " " + lines[i].strip()
                    i += 1
                items += nodes.list_item("", nodes.paragraph("", "", *_inline(item)))
            out.append(items)
        else:
            paragraph = [line.strip()]
            i += 1
            while (
                i < len(lines)
                and lines[i].strip()
                and not lines[i].lstrip().startswith(("|", "#", "- "))
            ):
                paragraph.append(lines[i].strip())
                i += 1
            out.append(nodes.paragraph("", "", *_inline(" ".join(paragraph))))
    return out


class MarkdownTables(SphinxDirective):
    required_arguments = 1
    option_spec = {"figure": directives.path}

    def run(self) -> list[nodes.Node]:
        path = _page_file(self, self.arguments[0])
        if not path.is_file():
            logger.warning(f"markdown-tables: no file {path}", location=self.get_location())
            return []
        out = markdown_nodes(path.read_text())
        figure = self.options.get("figure")
        if figure and _page_file(self, figure).is_file():  # not every report has a figure
            out.append(nodes.image(uri=figure, alt=Path(figure).name))
        return out


def setup(app):
    app.add_directive("api-package", ApiPackage)
    app.add_directive("command-help", CommandHelp)
    app.add_directive("run-record", RunRecord)
    app.add_directive("markdown-tables", MarkdownTables)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
