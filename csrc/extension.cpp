// Python module entry point of torch_pet._C. The ops themselves register through
// TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL in their own files; importing this module
// (torch_pet._extension does it) loads them into torch.ops.torch_pet.
#include <Python.h>

#ifndef TORCH_PET_BUILT_WITH_TORCH
#define TORCH_PET_BUILT_WITH_TORCH "unknown"
#endif

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
#ifdef WITH_CUDA
  PyModule_AddIntConstant(module, "WITH_CUDA", 1);
#else
  PyModule_AddIntConstant(module, "WITH_CUDA", 0);
#endif
  PyModule_AddStringConstant(module, "BUILT_WITH_TORCH", TORCH_PET_BUILT_WITH_TORCH);
  return module;
}
}
