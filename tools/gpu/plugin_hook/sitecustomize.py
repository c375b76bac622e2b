"""device.py --plugin: makes an SGLang without plugin loading (0.5.16 on the lent GPU machine) apply the
image's SGLang plugin the way SGLang 0.5.23 and main do in their workers: once SGLang's denoising-stage
module has been imported, glm_image_sglang.sglang_plugin.register() runs in that process. Python imports
this file at start-up when its folder is on PYTHONPATH; nothing else changes. Never in the image."""

import importlib.abc
import importlib.machinery
import sys

TARGET = "sglang.multimodal_gen.runtime.pipelines_core.stages.denoising"


class _AfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):  # type: ignore[no-untyped-def]
            run(module)
            from glm_image_sglang.sglang_plugin import register

            register()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _AfterImport())
