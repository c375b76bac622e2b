"""device.py --plugin: makes an SGLang without plugin loading (0.5.16 on the lent GPU machine) behave as
SGLang 0.5.23 and main do with the image's plugin: once SGLang's denoising-stage module is imported,
glm_image_sglang.sglang_plugin.register() runs in that process (SGLang's workers), and our launcher's
pre-flight is told that SGLang loads plugins (so OFFLOAD=expert-swap and GLM_AR's in-process edits are
planned as in the image). Python imports this file at start-up when its folder is on PYTHONPATH. Never in
the image."""

import importlib.abc
import importlib.machinery
import sys


def _register(module):  # type: ignore[no-untyped-def]
    from glm_image_sglang.sglang_plugin import register

    register()


def _loads_plugins(module):  # type: ignore[no-untyped-def]
    module.sglang_loads_plugins = lambda: True


AFTER_IMPORT = {
    "sglang.multimodal_gen.runtime.pipelines_core.stages.denoising": _register,
    "glm_image_sglang.preflight": _loads_plugins,
}


class _AfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        then = AFTER_IMPORT.pop(name, None)
        if then is None:
            return None
        if not AFTER_IMPORT:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):  # type: ignore[no-untyped-def]
            run(module)
            then(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _AfterImport())
