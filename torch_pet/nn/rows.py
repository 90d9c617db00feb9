"""Row gathers and row sums by index that torch.compile's Inductor can compile.

torch 2.13's Inductor CPU backend (more than one thread, dynamic shapes) fails to generate
code for an ``index_add`` into a single-element tensor of static size (dynamo specialises
sizes of 1: one structure or pool, one channel): an assertion in its parallel atomic-add
codegen. Into one row every index is 0, so while compiling the rows sum instead, which
changes no result; a gather from one row (whose backward is such an index_add) expands it
instead. Eager code runs the plain index ops. Regression tests: ``tests/test_export.py``
(the row helpers, ECSE pruning of one structure, whole PET on one periodic box).
"""
import torch
from torch import Tensor

__all__ = ["add_rows", "sum_rows", "take_rows"]


def add_rows(total: Tensor, index: Tensor, values: Tensor) -> Tensor:
    """``total.index_add(0, index, values)`` (out of place).

    Shapes:
        total [R, ...], index [M], values [M, ...] -> [R, ...]
    """
    if _static_single_row(total):
        return total + values.sum(0, keepdim=True)
    return total.index_add(0, index, values)


def sum_rows(values: Tensor, index: Tensor, num_rows) -> Tensor:
    """Sum of the rows of ``values`` with equal ``index``: a new ``[num_rows, ...]`` tensor.

    Shapes:
        values [M, ...], index [M] -> [num_rows, ...]
    """
    return add_rows(values.new_zeros(num_rows, *values.shape[1:]), index, values)


def take_rows(source: Tensor, index: Tensor) -> Tensor:
    """``source.index_select(0, index)`` (its backward is an index_add into ``source``).

    Shapes:
        source [R, ...], index [M] -> [M, ...]
    """
    if _static_single_row(source):
        return source.expand(index.shape[0], *source.shape[1:])
    return source.index_select(0, index)


def _static_single_row(tensor: Tensor) -> bool:
    """Traced by torch.compile/export with a first size that is the constant 1 (not a SymInt)."""
    rows = tensor.shape[0]
    return torch.compiler.is_compiling() and isinstance(rows, int) and rows == 1
