"""docs/launcher.md shows the launcher's effective command per model on 1 and 4 H100s: it must match
what the code builds. Regenerate with: python tests/unit/test_docs.py --write"""

import dataclasses
import re
import shlex
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from fakemodels import make
from glm_image_sglang import models, sglang_args
from glm_image_sglang.plan import Gpu, Machine, make_plan
from glm_image_sglang.settings import Settings

pytestmark = pytest.mark.unit
DOC = Path(__file__).parents[2] / "docs" / "launcher.md"
BEGIN, END = "<!-- BEGIN generated commands -->", "<!-- END generated commands -->"
H100 = 81559 * 1024 * 1024
FOLDERS = {
    "glm-image": "/app/models/GLM-Image",
    "wan2.2-t2v-a14b": "/app/models/Wan2.2-T2V-A14B-Diffusers",
    "wan2.2-i2v-a14b": "/app/models/Wan2.2-I2V-A14B-Diffusers",
    "wan2.2-ti2v-5b": "/app/models/Wan2.2-TI2V-5B-Diffusers",
}


def _wrap(argv: list[str]) -> str:
    return " \\\n    ".join(re.findall(r"\S+(?: (?!-)\S+)?", shlex.join(argv)))


def generated() -> str:
    out = [BEGIN]
    with tempfile.TemporaryDirectory() as tmp:
        for key, folder in FOLDERS.items():
            info = dataclasses.replace(models.inspect(make(Path(tmp) / key, key)), path=Path(folder))
            for n in (1, 4):
                settings = Settings.from_env({"MODEL_PATH": folder})
                machine = Machine(tuple(Gpu(i, "NVIDIA H100 80GB HBM3", H100) for i in range(n)), "nvidia-smi", None)
                # the image's SGLang loads its plugin (edits beside an AR server) and takes --srt-encoder-url
                plan = make_plan(settings, info, machine, plugin=True, srt_encoder=True)
                # the default: behind the gateway (a loopback port), whose test generation replaces SGLang's warm-up
                listen = ("127.0.0.1", 31000)
                ar_url = "http://127.0.0.1:32000" if plan.glm_ar == "srt" else None
                argv = sglang_args.build(settings, info, plan, 5555, 30005, None, listen, False, ar_url).argv
                out += [
                    f"### {info.display_name}, {n} x H100 80GB",
                    "",
                    f"Plan: offload `{plan.offload}`, CFG-parallel {'on' if plan.cfg_parallel else 'off'}, "
                    f"Ulysses {plan.ulysses} x Ring {plan.ring}; estimated peak "
                    f"{plan.gpu_need_bytes / models.GiB:.1f} GiB per GPU, {plan.host_need_bytes / models.GiB:.1f} GiB host.",
                    "",
                ]
                if ar_url is not None:
                    ar = sglang_args.build_ar(settings, info, plan, 32000, "--cuda-graph-max-bs-decode")  # 0.5.23
                    when = "started together with" if plan.ar_together else "started before"
                    out += [f"AR server (`GLM_AR=auto` chose srt), {when} the diffusion server:", "", "```", _wrap(ar),
                            "```", "", "The diffusion server:", ""]  # fmt: skip
                out += ["```", _wrap(argv), "```", ""]
    out.append(END)
    return "\n".join(out)


def test_launcher_doc_matches_code():
    """docs/launcher.md's effective commands should be what the launcher builds today."""
    text = DOC.read_text()
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert current == generated(), "docs/launcher.md is stale: python tests/unit/test_docs.py --write"


if __name__ == "__main__" and "--write" in sys.argv:
    text = DOC.read_text()
    DOC.write_text(text[: text.index(BEGIN)] + generated() + text[text.index(END) + len(END) :])
