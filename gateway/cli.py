"""The `gateway` command: `gateway serve`, `gateway keys create|list|revoke`, `gateway db upgrade`, `gateway rag …`."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

from gateway.browser_guard import is_loopback
from gateway.config import DEMO_CONFIG_PATH, ConfigError, load_config
from gateway.settings import Settings

log = logging.getLogger("gateway")


def serve(args: argparse.Namespace) -> int:
    settings = Settings()
    from gateway.telemetry.logs import configure_logging, flush_before_sigterm

    log_queue = configure_logging(settings.log_level, args.log_format or settings.log_format)
    path: Path = args.config or settings.config_path or DEMO_CONFIG_PATH
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    if not settings.auth_enabled and not is_loopback(args.host):
        print(
            f"gateway: refusing to listen on {args.host}: GATEWAY_ADMIN_KEY is not set, so the gateway would be "
            "open to anyone who can reach it. Set GATEWAY_ADMIN_KEY, or listen on 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    import uvicorn

    from gateway.app import create_app
    from gateway.server import server_config

    if path == DEMO_CONFIG_PATH:
        log.warning("no config given: using the demo config, where every provider is SIMULATED on loopback")
    log.info(
        "gateway on http://%s:%d/v1 (config %s, auth %s)",
        args.host,
        args.port,
        path,
        "on" if settings.auth_enabled else "off",
    )
    from gateway.telemetry.tracing import configure_tracing

    tracer_provider = configure_tracing(settings)
    flush_before_sigterm(*([tracer_provider.shutdown] if tracer_provider else []), log_queue.stop)
    app = create_app(settings, config)
    # Everything imported so far lives as long as the process: move it out of the
    # collector's reach, so full collections stop scanning it (they made the p99 tail).
    gc.collect()
    gc.freeze()
    server = server_config(
        app,
        settings,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers go through ours (and so in --log-format)
        access_log=args.access_log,
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(server).run()
    if tracer_provider is not None:
        tracer_provider.shutdown()  # export what is still batched
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="An OpenAI-compatible LLM routing gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the gateway")
    serve_cmd.add_argument(
        "--config", type=Path, default=None, help="YAML config (default: $GATEWAY_CONFIG or the demo)"
    )
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8080)
    serve_cmd.add_argument("--access-log", action="store_true", help="log every request line")
    serve_cmd.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="log lines as text or one JSON object each (default: $GATEWAY_LOG_FORMAT or text)",
    )
    serve_cmd.set_defaults(handler=serve)
    from gateway.admin.cli import add_commands
    from gateway.rag_cli import add_commands as add_rag_commands

    add_commands(commands)
    add_rag_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
