"""TapCustobar: settings, the shared HTTP session and the stream list."""

from __future__ import annotations

import logging
import sys
import typing as t
from functools import cached_property

import click
from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError

from tap_custobar.client import CustobarStream, RetriesExhaustedError
from tap_custobar.field_search import search_fields
from tap_custobar.http import CustobarSession
from tap_custobar.settings import (
    CONFIG_SCHEMA,
    DEFAULT_DISCOVERY_MAX_RECORDS,
    DEFAULT_USER_AGENT,
    MAX_PAGE_SIZE,
    Settings,
    check_settings,
    undocumented_event_types,
)
from tap_custobar.streams import CustomersStream, EventsStream, ProductsStream, SalesStream
from tap_custobar.writer import CustobarWriter

if t.TYPE_CHECKING:
    from singer_sdk import Stream

STREAM_TYPES = (CustomersStream, EventsStream, ProductsStream, SalesStream)


class TapCustobar(Tap):
    """Singer tap for Custobar's data API."""

    name = "tap-custobar"
    config_jsonschema = CONFIG_SCHEMA
    message_writer_class = CustobarWriter
    default_user_agent = DEFAULT_USER_AGENT
    config_errors: t.ClassVar[list[str]] = []

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        errors = super()._validate_config(raise_errors=False)
        if not errors:
            _, errors = check_settings(self.config)
        errors = [redact(error, self.config) for error in errors]
        if errors:
            TapCustobar.config_errors = errors  # for main()'s last line: the SDK CLI swallows them
        if errors and raise_errors:
            raise ConfigValidationError(
                "Invalid tap-custobar configuration: " + " ".join(errors),
                errors=errors,
                schema=self.config_jsonschema,
            )
        return errors

    @cached_property
    def settings(self) -> Settings:
        settings, errors = check_settings(self.config)
        if settings is None:
            raise ConfigValidationError(
                "Invalid tap-custobar configuration: " + " ".join(errors), errors=errors
            )
        if self.config.get("base_url") and self.config.get("company"):
            self.logger.info(
                "Both base_url and company are set: using base_url %s", settings.origin
            )
        for name in undocumented_event_types(settings.event_types):
            self.logger.warning(
                "event_types: %s is not a documented Custobar event type; reading it anyway", name
            )
        return settings

    @cached_property
    def session(self) -> CustobarSession:
        return CustobarSession(
            self.settings.origin, float(self.config.get("min_request_interval", 1.0))
        )

    def run_discovery(self) -> str:
        self._discovering = True
        return super().run_discovery()

    def discover_streams(self) -> t.Sequence[Stream]:
        streams: list[CustobarStream] = [stream_type(tap=self) for stream_type in STREAM_TYPES]
        if not getattr(self, "_discovering", False):
            return streams  # a sync: the catalog (or the built-in schema) decides
        if not self.config.get("discover_custom_fields", True):
            self.logger.info("discover_custom_fields is off: the catalog has the built-in fields")
            return streams
        discovered: list[Stream] = []
        for stream in streams:
            try:
                discovered.append(self.with_custom_fields(stream))
            except RetriesExhaustedError as exc:  # unreachable: every stream would wait again
                self.logger.warning(
                    "Custom-field discovery failed (%s); the catalog has the built-in fields only",
                    " ".join(str(exc).split()),
                )
                return [stream_type(tap=self) for stream_type in STREAM_TYPES]
            except Exception as exc:  # discovery must still produce a catalog
                self.logger.warning(
                    "%s: custom-field discovery failed (%s); this stream keeps its built-in fields",
                    stream.name,
                    " ".join(str(exc).split()) or exc.__class__.__name__,
                )
                discovered.append(type(stream)(tap=self))
        return discovered

    def with_custom_fields(self, stream: CustobarStream) -> CustobarStream:
        schema, _ = search_fields(
            stream,
            page_size=int(self.config.get("page_size", MAX_PAGE_SIZE)),
            budget=int(self.config.get("discovery_max_records", DEFAULT_DISCOVERY_MAX_RECORDS)),
            logger=self.logger,
        )
        return type(stream)(tap=self, schema=schema)


def redact(text: str, config: t.Mapping[str, t.Any]) -> str:
    """Remove the token from a message (JSON schema errors quote offending values)."""
    token = str(config.get("api_token") or "")
    return text.replace(token, "<redacted>") if len(token) >= 4 else text


def main() -> None:
    """Console entry point: a failure ends with one plain sentence on stderr, exit code 1."""
    try:
        # Without standalone mode click returns ctx.exit() codes instead of exiting.
        code = TapCustobar.cli(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("tap-custobar: interrupted.", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if not isinstance(exc, (ConfigValidationError, FatalAPIError)):
            logging.getLogger(TapCustobar.name).error("Unexpected failure", exc_info=exc)
        message = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"tap-custobar: error: {message}", file=sys.stderr)
        sys.exit(1)
    if isinstance(code, int) and code:
        if TapCustobar.config_errors:
            print(
                "tap-custobar: error: invalid configuration: "
                + " ".join(TapCustobar.config_errors),
                file=sys.stderr,
            )
        sys.exit(code)


if __name__ == "__main__":
    main()
