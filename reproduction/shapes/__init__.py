r"""The built-in data set: procedural composite shapes (furniture-like classes built from
boxes, cylinders, discs, frusta and spheres), so that every example and benchmark runs with
no download."""

from reproduction.shapes.primitives import sample_surface
from reproduction.shapes.synthetic import SyntheticShapes

__all__ = ["SyntheticShapes", "sample_surface"]
