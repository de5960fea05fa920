r"""Row gathers whose gradient does not depend on the thread count."""

from __future__ import annotations

from torch import Tensor

__all__ = ["gather_rows"]


def gather_rows(src: Tensor, index: Tensor) -> Tensor:
    r"""The rows :obj:`src[index]` for an integer :obj:`index` of any shape, as
    :obj:`src[index]` gives them, with a deterministic backward pass.

    The backward pass of advanced indexing (:obj:`index_put_` with accumulation) adds the
    gradients of repeated indices from several threads at once on CPU, in an order that
    changes from run to run; a cloud's nearest points and soft-projection neighbours repeat
    all the time, so training would not repeat under a seed. :func:`torch.index_select`'s
    backward adds them one after the other in the order of :obj:`index`: the sums a single
    thread computes, on any number of threads.

    Args:
        src (torch.Tensor): Rows :obj:`[N, *]`.
        index (torch.LongTensor): Row indices of any shape :obj:`S`, in :obj:`[0, N)`.

    :rtype: :class:`torch.Tensor` of shape :obj:`[*S, *]`
    """
    rows = src.index_select(0, index.reshape(-1))
    return rows.view(*index.shape, *src.shape[1:])
