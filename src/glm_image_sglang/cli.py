"""Command line: `glm-image-sglang serve` (the container's default), `check`, `env`, and the
sub-programs `gateway`, `client` and `random-model` (each with its own --help).

Data flows one way: environment -> settings -> model detection -> pre-flight -> argv -> supervised
processes (SGLang and the gateway). Nothing is started before everything has been validated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from . import kernel_seed, models, preflight, sglang_args, sglang_plugin
from .errors import LauncherError, ResourceError, report_internal_error
from .plan import Plan, make_plan
from .settings import FIELDS, GATEWAY_FIELDS, Field, GatewaySettings, Settings
from .supervisor import Child, Supervisor, log

BUILD_INFO = Path(os.environ.get("BUILD_INFO_FILE", "/app/build-info.json"))


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    model: models.ModelInfo
    plan: Plan
    launch: sglang_args.Launch
    env: dict[str, str]
    gateway_argv: list[str] | None  # None: GATEWAY=false, SGLang serves HOST:PORT itself
    ar_argv: list[str] | None = None  # GLM_AR=srt: the AR server, started before SGLang
    ar_url: str | None = None


def _build_info() -> str:
    try:
        info = json.loads(BUILD_INFO.read_text())
    except (OSError, ValueError):
        return ""
    packages = info.get("packages", {})
    parts = [f"{name} {meta.get('version', '?')}" for name, meta in sorted(packages.items())]
    return f"image {info.get('image_version', '?')} ({', '.join(parts)})"


def prepare(settings: Settings) -> Prepared:
    """Everything up to the final argv, with every check. Raises LauncherError."""
    # the gateway's settings too, before the minutes-long load
    gateway_settings = GatewaySettings.from_env() if settings.gateway else None
    path = models.resolve_model_path(settings.model_path, settings.hf_home)
    model = models.inspect(path, settings.model_variant)
    models.require_complete(model)
    machine = preflight.probe_machine()
    flags = preflight.probe_sglang_flags()
    # with an AR server (GLM_AR), edits stay in-process where SGLang loads the image's plugin (not turned off)
    plugin = sglang_plugin.enabled(os.environ) and preflight.sglang_loads_plugins()
    srt_encoder = None if flags is None else "--srt-encoder-url" in flags
    plan = make_plan(settings, model, machine, plugin, srt_encoder)
    preflight.check_toolchain(settings.require_gpu)
    preflight.check_attention_backend(settings.attention_backend)
    preflight.check_resources(settings, plan, machine, model.display_name)
    preflight.check_writable([settings.outputs, settings.uploads, settings.caches])
    preflight.check_port(settings.host, settings.port)
    taken = [settings.port]
    listen = None
    if settings.gateway:
        # SGLang also binds its request broker on its own port + 1 (server_args.broker_port)
        upstream_port = settings.sglang_port or preflight.free_port_pair("127.0.0.1", 31000, avoid=taken)
        preflight.check_port("127.0.0.1", upstream_port)
        preflight.check_port("127.0.0.1", upstream_port + 1, "SGLang's request broker (its port + 1)")
        listen = ("127.0.0.1", upstream_port)
        taken += [upstream_port, upstream_port + 1]
    else:
        preflight.check_port(settings.host, settings.port + 1, "SGLang's request broker (PORT + 1)")
        taken.append(settings.port + 1)
    scheduler = settings.scheduler_port or preflight.free_port("127.0.0.1", 5555, avoid=taken)
    master = settings.master_port or preflight.free_port("127.0.0.1", 30005, avoid=[*taken, scheduler])
    ar_argv = None
    ar_url = settings.glm_ar_url  # one that runs already
    if plan.glm_ar == "srt":
        ar_port = preflight.free_port("127.0.0.1", 32000, avoid=[*taken, scheduler, master])
        ar_url = f"http://127.0.0.1:{ar_port}"
        ar_argv = sglang_args.build_ar(settings, model, plan, ar_port, preflight.probe_ar_graph_flag())
    # the gateway's readiness generation (READY_PROBE=generate) replaces SGLang's own warm-up
    probe_generates = bool(gateway_settings and gateway_settings.ready_probe == "generate" and model.variant)
    launch = sglang_args.build(
        settings,
        model,
        plan,
        scheduler,
        master,
        flags,
        listen,
        own_warmup=not probe_generates,
        ar_url=ar_url,
    )
    _link_alias(sglang_args.model_path_for_sglang(settings, model), model.path)
    env = sglang_args.child_env(settings, plan, dict(os.environ))
    gateway_argv = None
    if listen is not None:
        gateway_argv = [
            sys.executable,
            "-m",
            "glm_image_sglang",
            "gateway",
            "--upstream",
            f"http://127.0.0.1:{listen[1]}",
            "--host",
            settings.host,
            "--port",
            str(settings.port),
            "--graceful-shutdown-timeout",
            str(settings.graceful_shutdown_timeout),
            "--ready-timeout",
            str(settings.startup_timeout),
            "--log-level",
            settings.log_level,
        ]
        if model.variant:
            gateway_argv += ["--model-variant", model.variant.key]
        if settings.served_model_name:
            gateway_argv += ["--served-model-name", settings.served_model_name]
        if ar_url is not None and not plan.edits_in_process:
            gateway_argv += ["--edits-off", EDITS_OFF_WITH_SRT]
        if ar_url is not None:  # ready only while the AR server answers too (it may start beside SGLang)
            gateway_argv += ["--ar-health", f"{ar_url}/health"]
    return Prepared(settings, model, plan, launch, env, gateway_argv, ar_argv, ar_url)


# SGLang (0.5.16 to 0.5.23) raises NotImplementedError for an edit when the AR stage is a separate server;
# the image's plugin runs edits in-process instead, where SGLang loads plugins (0.5.23 does, 0.5.16 not)
EDITS_OFF_WITH_SRT = (
    "edits are off in this deployment: its GLM_AR setting runs the AR stage on SGLang's LLM runtime, which has "
    "no edit path, and the image's plugin cannot run them in-process here (an SGLang that loads no plugins, or "
    "GLM_IMAGE_SGLANG_PLUGIN=off). Use /v1/images/generations, or serve with GLM_AR=in-process for edits."
)


def _link_alias(alias: Path, target: Path) -> None:
    if alias == target:
        return
    try:
        alias.parent.mkdir(parents=True, exist_ok=True)
        if alias.is_symlink() or alias.exists():
            alias.unlink()
        alias.symlink_to(target.resolve(), target_is_directory=True)
    except OSError as e:
        raise ResourceError(f"cannot create the model alias {alias}: {e.strerror}. Check CACHE_DIR.") from None


def report(p: Prepared) -> None:
    info = _build_info()
    if info:
        log(info)
    version = preflight.sglang_version()
    log(f"SGLang {version or '(version unknown)'}")
    log("configuration:")
    for key, value in p.settings.redacted().items():
        log(f"  {key}={value}")
    gib = models.GiB
    log(
        f"model: {p.model.display_name} at {p.model.path} "
        f"({p.model.weight_bytes() / gib:.1f} GiB of weights in {len(p.model.components)} components)"
    )
    for note in p.plan.notes:
        log(f"  {note}")
    log(
        f"estimated peak memory: {p.plan.gpu_need_bytes / gib:.1f} GiB per GPU, "
        f"{p.plan.host_need_bytes / gib:.1f} GiB host"
    )
    for flag in p.launch.dropped:
        preflight.warn(f"SGLang {version} has no {flag}; it is left out")
    if p.ar_argv:
        order = "started together with SGLang" if p.plan.ar_together else "started first; SGLang once it is ready"
        log(f"AR server ({order}): " + shlex.join(p.ar_argv))
    elif p.ar_url:
        log(f"AR server: {p.ar_url} (runs elsewhere; SGLang starts once its /health answers 200)")
    log("command: " + shlex.join(p.launch.argv))
    if p.gateway_argv:
        log("gateway: " + shlex.join(p.gateway_argv))
    else:
        preflight.warn("GATEWAY=false: SGLang serves the port directly (no API key, no validation, no limits)")


def cmd_serve(settings: Settings) -> int:
    prepared = prepare(settings)
    report(prepared)
    for line in kernel_seed.seed(settings.kernel_seed_dir, prepared.env):
        log(line)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    if ":" in host:
        host = f"[{host}]"
    after = f"{prepared.ar_url}/health" if prepared.ar_url and not prepared.plan.ar_together else None
    sglang = Child("SGLang", prepared.launch.argv, prepared.env, start_after=after)
    ar = Child("AR server", prepared.ar_argv, prepared.env, ar_server=True) if prepared.ar_argv else None
    children = [sglang] if ar is None else [ar, sglang]
    if prepared.gateway_argv:
        children.append(Child("gateway", prepared.gateway_argv, dict(os.environ), drains=True))
    supervisor = Supervisor(
        children,
        f"http://{host}:{settings.port}/health",
        grace_seconds=settings.graceful_shutdown_timeout,
        startup_timeout=settings.startup_timeout,
    )
    code = supervisor.run()
    if settings.glm_ar == "auto" and ar is not None and supervisor.died is ar and not supervisor.ready:
        # auto chose the AR server and it never came up: serve as GLM_AR=in-process would, rather than not at all
        preflight.warn(
            f"GLM_AR=auto: the AR server exited with code {ar.exit_code()} before it was ready (its last lines "
            "are above); starting again with the AR stage in-process. Set GLM_AR=srt to make this an error, "
            "or GLM_AR=in-process to skip the attempt."
        )
        return cmd_serve(dataclasses.replace(settings, glm_ar="in-process"))
    return code


def cmd_check(settings: Settings) -> int:
    prepared = prepare(settings)
    report(prepared)
    log("all checks passed (nothing started)")
    return 0


def env_table(group: tuple[Field, ...]) -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for f in group:
        default = f"`{f.default}`" if f.default not in (None, "") else "—"
        rows.append(f"| `{f.env}` | {default} | {f.help} |")
    return "\n".join(rows)


def cmd_env() -> int:
    print("Launcher:\n")
    print(env_table(FIELDS))
    print("\nGateway (GATEWAY=true, or `glm-image-sglang gateway`):\n")
    print(env_table(GATEWAY_FIELDS))
    return 0


# Sub-programs with their own options (`glm-image-sglang NAME --help`): module, one line, and the pip
# packages they need beyond this package's own. Each is imported only when asked for.
PROGRAMS: dict[str, tuple[str, str, str]] = {
    "gateway": ("gateway.server", "the public API alone, in front of any SGLang server (--upstream URL)", ""),
    "client": ("client", "generate an image, an edit or a video through the API and save it", ""),
    "download": ("download", "fetch model folders from the Hub for /app/models (the air-gap path)", ""),
    "random-model": (
        "random_models",
        "build random-weight model folders of the real architectures (tests, smoke tests)",
        "torch diffusers transformers",
    ),
}
LAUNCHER_COMMANDS = {
    "serve": "(default) check everything, then start SGLang and the gateway",
    "check": "run every check and print the commands, start nothing",
    "env": "print the environment variables as a table",
}


def _program(name: str, argv: list[str]) -> int:
    import importlib

    module_name, _, needs = PROGRAMS[name]
    try:
        module = importlib.import_module(f".{module_name}", __package__)
        code: int = module.main(argv)
        return code
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if not missing or missing == __package__:
            raise  # our own bug, not a missing package
        install = f"pip install {needs}" if needs else "pip install glm-image-sglang (with its dependencies)"
        print(
            f"ERROR: `glm-image-sglang {name}` needs the Python package '{missing}', which is not installed "
            f"here. Run it inside the image (docker run --rm IMAGE {name} ...), or {install}.",
            file=sys.stderr,
        )
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PROGRAMS:
        return _program(argv[0], argv[1:])
    commands = "\n".join(f"  {name:13} {what}" for name, what in LAUNCHER_COMMANDS.items())
    programs = "\n".join(f"  {name:13} {PROGRAMS[name][1]}" for name in PROGRAMS)
    parser = argparse.ArgumentParser(
        prog="glm-image-sglang",
        description="Start the SGLang diffusion server for GLM-Image or Wan 2.2, configured from the environment.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"commands:\n{commands}\n{programs}\n\nEvery setting of serve and check is an environment "
        "variable (`glm-image-sglang env`); the others take options (`glm-image-sglang NAME --help`).",
    )
    choices = [*LAUNCHER_COMMANDS, *PROGRAMS]  # the others never get here: named in "invalid choice" messages
    parser.add_argument("command", nargs="?", default="serve", choices=choices, metavar="command")
    args = parser.parse_args(argv)
    if args.command == "env":
        return cmd_env()
    try:
        settings = Settings.from_env()
        return cmd_serve(settings) if args.command == "serve" else cmd_check(settings)
    except LauncherError as e:
        print(f"{e.prefix}: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug of ours: say so in one line, details only on request
        return report_internal_error("internal launcher error", e)


if __name__ == "__main__":
    sys.exit(main())
