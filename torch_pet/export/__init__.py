"""torch.compile and torch.export of PET and of ECSE-symmetrized PET.

What can be captured (measured graph breaks in ``tests/test_export.py``):

* ``torch.compile(PET)`` and ``torch.compile(ECSESymmetrizer(PET))`` work on the whole
  modules and agree with eager, with graph breaks: input validation needs the data on the
  host, the neighbour list and the ECSE pair lists have data-dependent sizes, PET reads its
  padded width K with ``int(...)``, and the eager wrapper chunks its rotated copies in a
  Python loop, prunes frames with boolean masks and builds a PyG ``Batch`` of copies. The
  pieces between breaks are compiled.
* One graph each, all sizes dynamic, for ``torch.export`` (deployment: save/load) and
  ``torch.compile(fullgraph=True)``: the integer structure (neighbour
  lists, frame pairs, copy layout) is built eagerly by compiled C++ ops, the differentiable
  rest is a module without data-dependent shapes:

  - PET: :func:`graph_inputs` + :class:`PETGraphModel` (:func:`export_pet`,
    :class:`ExportedPET`);
  - ECSE-symmetrized PET: :func:`ecse_graph_inputs` + :class:`ECSEGraphModel` (frames,
    weights, pruning, rotated copies, PET on all copies, average; :func:`export_ecse`,
    :class:`ExportedECSE`).

  ``ExportedPET``/``ExportedECSE`` are drop-in ``model(data)`` modules for
  ``energy_and_forces`` and the ASE calculator (forces and stress by autograd through the
  exported program).
"""
from torch_pet.export.pet import (GRAPH_INPUTS, ExportedPET, PETGraphModel, export_pet,
                                  graph_edge_vectors, graph_inputs)
from torch_pet.export.ecse import ECSEGraphModel, ExportedECSE, ecse_graph_inputs, export_ecse

__all__ = ["GRAPH_INPUTS", "ExportedPET", "PETGraphModel", "export_pet", "graph_edge_vectors",
           "graph_inputs", "ECSEGraphModel", "ExportedECSE", "ecse_graph_inputs", "export_ecse"]
