"""The tap's settings: their JSON schema and the checks JSON schema cannot express."""

from __future__ import annotations

import datetime as dt
import decimal
import difflib
import ipaddress
import json
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from singer_sdk import typing as th
from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR

from tap_custobar import __version__
from tap_custobar.datetimes import get_zone, parse_bound

DOCUMENTED_EVENT_TYPES = (
    "MAIL_OPEN",
    "MAIL_CLICK",
    "BASKET_ADD",
    "BROWSE",
    "AUTOMATED_CAMPAIGN",
    "MAIL_DEFERRED",
    "MAIL_UNSUBSCRIBE",
    "MAIL_BLOCKED",
)

# Filters from the API doc's tables, per stream.
DOCUMENTED_FILTERS: dict[str, tuple[str, ...]] = {
    "customers": (
        "external_id",
        "email",
        "phone_number",
        "first_name",
        "last_name",
        "campaign_key",
        "can_email",
        "can_sms",
        "can_post",
        "can_push",
        "city",
        "country",
        "zip_code",
        "province",
    ),
    "events": ("type", "date.gte", "date.lte"),
    "sales": (
        "sale_external_id",
        "sale_date",
        "sale_customer_id",
        "sale_phone_number",
        "sale_email",
        "sale_shop_id",
        "sale_payment_method",
        "sale_state",
        "external_id",
        "product_id",
        "product_sku",
    ),
    "products": (
        "external_id",
        "sku",
        "ean",
        "title",
        "brand",
        "category",
        "category_id",
        "type",
        "vendor",
        "shop_id",
        "visible",
        "in_stock",
        "language",
        "stock.shop_id",
        "stock.quantity.gte",
        "stock.quantity.lte",
    ),
}

# Filters the tap drives itself, and the setting to use instead.
TAP_DRIVEN_FILTERS: dict[str, dict[str, str]] = {
    "events": {"type": "event_types", "date.gte": "start_date", "date.lte": "end_date"},
    "sales": {"sale_date": "start_date / end_date"},
}

MAX_PAGE_SIZE = 10000
DEFAULT_DISCOVERY_MAX_RECORDS = 100_000
DEFAULT_USER_AGENT = f"tap-custobar/{__version__}"

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "api_token",
        th.StringType,
        required=True,
        secret=True,
        title="API token",
        description="Custobar access token (needs GET on /api/data/<stream>/ for each "
        "selected stream). Sent only in the Authorization header.",
    ),
    th.Property(
        "company",
        th.StringType,
        title="Company",
        description="Tenant subdomain: the API root is https://<company>.custobar.com.",
    ),
    th.Property(
        "base_url",
        th.StringType,
        title="Base URL",
        description="Root URL of the instance (custom domain or the sandbox). Wins over "
        "`company` when both are set. Plain http:// only for loopback hosts.",
    ),
    th.Property(
        "auth_scheme",
        th.StringType,
        default="Token",
        allowed_values=["Token", "Bearer"],
        title="Auth scheme",
        description="Authorization scheme: `Token <token>` (data API "
        "doc) or `Bearer <token>` (newer docs).",
    ),
    th.Property(
        "start_date",
        th.StringType,
        title="Start date",
        description="Earliest event `date` / `sale_date` to extract when there is no "
        "bookmark (inclusive). A date or date-time; without offset it is read in "
        "`api_timezone`.",
    ),
    th.Property(
        "end_date",
        th.StringType,
        title="End date",
        description="Latest event `date` / `sale_date` to extract (inclusive). Splits a "
        "backfill into windows.",
    ),
    th.Property(
        "event_types",
        th.ArrayType(th.StringType),
        default=list(DOCUMENTED_EVENT_TYPES),
        title="Event types",
        description="Event types to extract; each is one partition of `events` with its "
        "own bookmark.",
    ),
    th.Property(
        "lookback_days",
        th.IntegerType(minimum=0),
        default=1,
        title="Lookback days",
        description="Incremental reads restart this many whole days before the bookmark's "
        "day, to pick up late-arriving rows (re-read rows are re-emitted).",
    ),
    th.Property(
        "filters",
        th.ObjectType(additional_properties=True),
        default={},
        title="Filters",
        description="Server-side filters per stream, e.g. "
        '{"products": {"visible": true}, "sales": {"sale_shop_id": "1"}}.',
    ),
    th.Property(
        "page_size",
        th.IntegerType(minimum=1, maximum=MAX_PAGE_SIZE),
        default=MAX_PAGE_SIZE,
        title="Page size",
        description="Records per request (the `limit` parameter), 1-10000.",
    ),
    th.Property(
        "min_request_interval",
        th.NumberType(minimum=0),
        default=1.0,
        title="Minimum request interval",
        description="Minimum seconds between the starts of two requests; 0 disables pacing.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(minimum=0.001),  # type: ignore[arg-type]  # typed int, any number works
        default=300,
        title="Request timeout",
        description="Per-request timeout in seconds.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0, maximum=100),
        default=8,
        title="Max retries",
        description="Retries (after the first try) for 429, 5xx, timeouts, dropped "
        "connections and unreadable bodies; waits double each time and honour Retry-After.",
    ),
    th.Property(
        "discover_custom_fields",
        th.BooleanType,
        default=True,
        title="Discover custom fields",
        description="Discovery asks the tenant which fields its data has and adds the ones "
        "the built-in schema lacks, with inferred types.",
    ),
    th.Property(
        "discovery_max_records",
        th.IntegerType(minimum=0),
        default=DEFAULT_DISCOVERY_MAX_RECORDS,
        title="Discovery max records",
        description="Discovery reads one page of records per stream (per event type for "
        "events) to type the custom fields, then looks up fields that page lacked with "
        "narrow `fields=` requests until each has a value or this many records (that first "
        "page included) have been read. Fields still unseen are typed string.",
    ),
    th.Property(
        "api_timezone",
        th.StringType,
        default="UTC",
        title="API timezone",
        description="IANA zone in which Custobar datetimes without an offset are read.",
    ),
    th.Property(
        "user_agent",
        th.StringType,
        default=DEFAULT_USER_AGENT,
        title="User agent",
        description="Sent as the User-Agent header.",
    ),
    th.Property(
        "emit_activate_version_messages",
        th.BooleanType,
        default=True,
        title="Emit ACTIVATE_VERSION",
        description="Full-table streams (customers, products) emit ACTIVATE_VERSION so the "
        "target removes rows that no longer exist in Custobar.",
    ),
).to_dict()


@dataclass(frozen=True)
class Settings:
    """Validated settings in the shapes the streams use."""

    origin: str  # scheme://host[:port], normalised
    base_url: str
    api_timezone: dt.tzinfo
    start: dt.datetime | None  # inclusive lower bound
    end: dt.datetime | None  # exclusive upper bound (one microsecond past end_date)
    event_types: tuple[str, ...]
    filters: dict[str, dict[str, t.Any]]


def normalize_origin(url: str) -> str:
    """`scheme://host[:port]` with the host lower-cased and default ports dropped."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if ":" in host:
        host = f"[{host}]"
    if port is None or (scheme, port) in {("http", 80), ("https", 443)}:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host.lower() in {"localhost", "localhost."} or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_settings(config: t.Mapping[str, t.Any]) -> tuple[Settings | None, list[str]]:
    """Validate what the JSON schema cannot; return the settings or the error list."""
    errors: list[str] = []
    base_url = _check_base_url(config, errors)
    zone = _check_zone(config, errors)
    start, end = _check_dates(config, zone, errors)
    event_types = _check_event_types(config, errors)
    filters = _check_filters(config, errors)
    if problem := token_problem(config.get("api_token")):
        errors.append(f"api_token: {problem}")
    if errors or base_url is None:
        return None, errors
    return Settings(
        origin=normalize_origin(base_url),
        base_url=base_url,
        api_timezone=zone,
        start=start,
        end=end,
        event_types=event_types,
        filters=filters,
    ), errors


def token_problem(value: t.Any) -> str | None:
    """Why the token cannot go into an Authorization header, in words that quote no part
    of it; None when it can. Surrounding whitespace does not count (it is stripped)."""
    if not isinstance(value, str) or not value.strip():
        return "the Custobar API token is missing or empty."
    token = value.strip()
    if any(ord(char) < 32 or ord(char) == 127 for char in token):
        return (
            "the token has a line break or another control character inside it (only "
            "surrounding whitespace is removed); copy the token again."
        )
    try:
        token.encode("latin-1")
    except UnicodeEncodeError:
        return (
            "the token has characters an HTTP header cannot carry (outside Latin-1, such "
            "as typographic quotes or dashes); copy the token again."
        )
    return None


def schema_errors(schema: dict, config: t.Mapping[str, t.Any]) -> tuple[list[str], list[str]]:
    """The config's JSON-schema errors: values outside a setting's minimum/maximum, named by
    the setting with its range; and the others, in the SDK's wording."""
    ranges: list[str] = []
    others: list[str] = []
    for error in DEFAULT_JSONSCHEMA_VALIDATOR(schema).iter_errors(dict(config)):
        where = list(error.path)
        if error.validator in ("minimum", "maximum") and len(where) == 1:
            low, high = error.schema.get("minimum"), error.schema.get("maximum")
            upper = f" and at most {high:g}" if high is not None else ""
            value = error.instance  # a Decimal from a config file or environment variable
            shown = str(value) if isinstance(value, decimal.Decimal) else repr(value)
            ranges.append(f"{where[0]}: {shown} is out of range (at least {low:g}{upper}).")
        elif where:
            others.append(f"{error.message} in config[{']['.join(map(repr, where))}]")
        else:
            others.append(error.message)
    return ranges, others


def resolve_base_url(config: t.Mapping[str, t.Any]) -> str | None:
    """The API root from `base_url` or `company`."""
    if config.get("base_url"):
        return str(config["base_url"]).rstrip("/")
    if config.get("company"):
        return f"https://{config['company']}.custobar.com"
    return None


def _check_base_url(config: t.Mapping[str, t.Any], errors: list[str]) -> str | None:
    company = config.get("company")
    if company and not config.get("base_url"):
        label = str(company)
        if not label.replace("-", "").isalnum() or label.startswith("-"):
            errors.append(
                f"company: {label!r} is not a valid subdomain (letters, digits and '-' only)."
            )
            return None
    base_url = resolve_base_url(config)
    if base_url is None:
        errors.append("company / base_url: set `company` (your Custobar subdomain) or `base_url`.")
        return None
    parts = urlsplit(base_url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        errors.append(f"base_url: {base_url!r} has an invalid port.")
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        errors.append(f"base_url: {base_url!r} is not an http(s) URL with a host.")
        return None
    if parts.query or parts.fragment:
        errors.append("base_url: must not carry a query string or fragment.")
        return None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        errors.append(
            f"base_url: plain http:// is refused for {parts.hostname} (the token would "
            "travel unencrypted); use https://, or http:// only for a loopback host."
        )
        return None
    return base_url


def _check_zone(config: t.Mapping[str, t.Any], errors: list[str]) -> dt.tzinfo:
    name = str(config.get("api_timezone") or "UTC")
    try:
        return get_zone(name)
    except KeyError:
        errors.append(f"api_timezone: {name!r} is not a known IANA time zone name.")
        return dt.timezone.utc


def _check_dates(
    config: t.Mapping[str, t.Any], zone: dt.tzinfo, errors: list[str]
) -> tuple[dt.datetime | None, dt.datetime | None]:
    start = end = None
    if config.get("start_date"):
        try:
            start, _ = parse_bound(str(config["start_date"]), zone)
        except ValueError:
            errors.append(
                f"start_date: {config['start_date']!r} is not an ISO 8601 date or date-time."
            )
    if config.get("end_date"):
        try:
            end_value, is_date = parse_bound(str(config["end_date"]), zone)
            if is_date:  # a bare end date includes that whole day in api_timezone
                local_day = dt.date.fromisoformat(str(config["end_date"]).strip())
                next_day = dt.datetime.combine(local_day + dt.timedelta(days=1), dt.time())
                end = next_day.replace(tzinfo=zone).astimezone(dt.timezone.utc)
            else:
                end = end_value + dt.timedelta(microseconds=1)
        except ValueError:
            errors.append(f"end_date: {config['end_date']!r} is not an ISO 8601 date or date-time.")
    if start is not None and end is not None and end <= start:
        errors.append(
            f"end_date: {config['end_date']!r} is before start_date {config['start_date']!r}."
        )
    return start, end


def _check_event_types(config: t.Mapping[str, t.Any], errors: list[str]) -> tuple[str, ...]:
    types = config.get("event_types")
    if types is None:
        return DOCUMENTED_EVENT_TYPES
    if not isinstance(types, (list, tuple)) or not all(
        isinstance(name, str) and name.strip() for name in types
    ):
        errors.append("event_types: must be a list of event type names.")
        return ()
    if len(set(types)) != len(types):
        errors.append("event_types: lists a type more than once.")
    return tuple(types)


def undocumented_event_types(types: t.Iterable[str]) -> list[str]:
    """Configured types the API doc does not list (accepted, with a warning)."""
    return [name for name in types if name not in DOCUMENTED_EVENT_TYPES]


def _check_filters(config: t.Mapping[str, t.Any], errors: list[str]) -> dict[str, dict[str, t.Any]]:
    filters = config.get("filters") or {}
    if not isinstance(filters, dict):
        errors.append("filters: must be an object of stream name -> {filter: value}.")
        return {}
    checked: dict[str, dict[str, t.Any]] = {}
    for stream, stream_filters in filters.items():
        if stream not in DOCUMENTED_FILTERS:
            errors.append(
                f"filters: unknown stream {stream!r}; valid streams are "
                f"{', '.join(sorted(DOCUMENTED_FILTERS))}."
            )
            continue
        if not isinstance(stream_filters, dict):
            errors.append(f"filters.{stream}: must be an object of filter -> value.")
            continue
        for name, value in stream_filters.items():
            message = _filter_error(stream, name, value)
            if message:
                errors.append(message)
        checked[stream] = dict(stream_filters)
    return checked


def _filter_error(stream: str, name: str, value: t.Any) -> str | None:
    driven = TAP_DRIVEN_FILTERS.get(stream, {})
    if name in driven:
        return (
            f"filters.{stream}: {name!r} is set by the tap itself; use the "
            f"`{driven[name]}` setting instead."
        )
    is_custom = "__" in name and not name.startswith("__") and not name.endswith("__")
    if name not in DOCUMENTED_FILTERS[stream] and not is_custom:
        valid = [f for f in DOCUMENTED_FILTERS[stream] if f not in driven]
        return (
            f"filters.{stream}: unknown filter {name!r}; valid filters are "
            f"{', '.join(valid)} or a custom field <company>__<name>."
        )
    if isinstance(value, (dict, list)) or value is None:
        return f"filters.{stream}.{name}: the value must be a string, number or boolean."
    return None


def filter_query_value(value: t.Any) -> str:
    """A filter value as Custobar expects it in the query string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- settings from environment variables ---------------------------------------------------

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def as_text_schema(schema: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The settings schema with every property a string: the SDK's environment parser then
    hands every value over as written (it would crash on a bad integer and leave numbers as
    text); env_values() gives them their types."""
    return {**schema, "properties": {name: {"type": "string"} for name in schema["properties"]}}


def numbers_from_text(config: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any]) -> dict:
    """The config with numeric settings written as text ("0.5") read as numbers.

    Meltano hands a `kind: string` setting over as text, and `kind: string` is the only kind
    that carries a fraction from an environment variable in Meltano 4.4.1 (`kind: decimal`
    crashes there, `kind: integer` refuses "0.5"). Text that does not read as a number stays
    text, so that the settings check names the setting.
    """
    properties = schema.get("properties", {})
    converted = dict(config)
    for name, value in config.items():
        types = properties.get(name, {}).get("type", ())
        types = [types] if isinstance(types, str) else list(types)
        if isinstance(value, str) and "string" not in types and {"number", "integer"} & {*types}:
            converted[name] = env_value(value, properties[name])
    return converted


def env_values(raw: t.Mapping[str, str], schema: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """Environment strings in the types their settings declare. A value that does not read as
    its type stays text, so that the settings check names the setting and the type."""
    properties = schema.get("properties", {})
    return {name: env_value(text, properties.get(name, {})) for name, text in raw.items()}


def env_value(text: str, prop: t.Mapping[str, t.Any]) -> t.Any:
    types = prop.get("type", "string")
    types = [types] if isinstance(types, str) else list(types)
    stripped = text.strip()
    for kind in types:
        if kind == "integer":
            try:
                return int(stripped)
            except ValueError:
                continue
        if kind == "number":
            try:
                number = decimal.Decimal(stripped)
            except decimal.InvalidOperation:
                continue
            if number.is_finite():  # Decimal, like the numbers of a config file
                return int(number) if stripped.lstrip("+-").isdigit() else number
        if kind == "boolean" and stripped.lower() in (*_TRUE, *_FALSE):
            return stripped.lower() in _TRUE
        if kind in ("array", "object"):
            try:
                value = json.loads(stripped, parse_float=decimal.Decimal)
            except ValueError:
                value = None
            if isinstance(value, list if kind == "array" else dict):
                return value
            if kind == "array" and prop.get("items", {}).get("type") in ("string", ["string"]):
                return [item.strip() for item in stripped.split(",") if item.strip()]
    return text


def unknown_setting_warnings(
    config: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any]
) -> list[str]:
    """One warning per setting name the tap does not know, naming the closest known one."""
    known = list(schema.get("properties", {}))
    warnings = []
    for name in config:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else "see `tap-custobar --about`."
        warnings.append(f"Unknown setting `{name}` is ignored; {hint}")
    return warnings
