"""The sandbox's deterministic generated data set.

Records are sparse (optional keys absent, never null), carry custom fields named
``<company>__<name>`` and use a mix of datetime styles: ``Z``, other UTC offsets, no offset
(meaning UTC) and a few with fractional seconds. Every date falls in the ``WINDOW_DAYS`` days up
to and including the anchor day. The same seed and anchor always give equal data sets.

Generation is written for speed (one ``random.Random`` per stream, table look-ups, no datetime
objects per record) so a data set of a million customers is practical.
"""

from __future__ import annotations

import functools
import gc
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, NamedTuple

STREAMS = ("customers", "products", "sales", "events")
EVENT_TYPES = (
    "MAIL_OPEN",
    "MAIL_CLICK",
    "BASKET_ADD",
    "BROWSE",
    "AUTOMATED_CAMPAIGN",
    "MAIL_DEFERRED",
    "MAIL_UNSUBSCRIBE",
    "MAIL_BLOCKED",
)
SALE_STATES = ("NEW", "PENDING_PAYMENT", "PROCESSING", "COMPLETE", "CANCELLED", "CLOSED", "HOLDED")
SHOPS = ("BAKER-STREET", "CANNON-STREET", "KAMPPI", "TAPIOLA")

WINDOW_DAYS = 60
# This many events of each type share one timestamp (12:00:00Z, this many days before the
# anchor), so that they straddle page boundaries at small limits.
SHARED_TIMESTAMP_EVENTS = 36
SHARED_EVENT_DAYS_BEFORE_ANCHOR = 10
# Custom fields every stream has: base name -> type of its values.
CUSTOM_FIELDS = {
    "points": "integer",
    "score": "number",
    "vip": "boolean",
    "segment": "string",
    "last_seen": "date-time string",
    "labels": "array of strings",
    "profile": "object {level: integer, name: string, badges: array of strings}",
    "rare_flag": "boolean, on 2-3 records in the last 20% of the stream",
    "mixed": "integer on some records, string on others",
}
RARE_FLAG_RECORDS = 3
# The tricky-fields data set (generate_dataset(tricky_after=N)): customer custom fields that
# trip type inference, placed relative to the first N records (one page of N records).
TRICKY_FIELDS = {
    "late_flag": "boolean, only on customers beyond the first N",
    "code": "string on some customers, integer on others",
    "amount": "number: whole on the first N customers, fractional beyond, one string 'unknown'",
    "address": "object {street: string, floor: number, verified: boolean, since: date-time}",
    "mixed_list": "array whose items are strings, integers and fractions",
}
# Beyond this many records (transactions for sales), records are copies of earlier ones with
# their own identifiers (and dates, for sales and events): the fast path for large data sets.
TEMPLATE_POOL = 2048
DATE_POOL = 1 << 16  # copies of templates take their dates from this many random ones
CUSTOMER_POOL = 1 << 14  # ... and their customers from this many random ones
RARE_FLAG_CANDIDATES = 5000

Record = dict[str, Any]

# (name, ASCII form for e-mail addresses)
FIRST_NAMES = (
    ("Aino", "aino"), ("Eero", "eero"), ("Šárka", "sarka"), ("Øyvind", "oyvind"),
    ("Zoë", "zoe"), ("Matti", "matti"), ("Liisa", "liisa"), ("James", "james"),
    ("Olivia", "olivia"), ("Yuki", "yuki"), ("Björn", "bjorn"), ("Chloé", "chloe"),
    ("Jörg", "jorg"), ("Emma", "emma"), ("Mikko", "mikko"), ("Ana", "ana"),
)  # fmt: skip
LAST_NAMES = (
    ("Jääskeläinen", "jaaskelainen"), ("Virtanen", "virtanen"), ("Nieminen", "nieminen"),
    ("Anderson", "anderson"), ("Carroll", "carroll"), ("Østergaard", "ostergaard"),
    ("Müller", "muller"), ("Tanaka", "tanaka"), ("Korhonen", "korhonen"), ("Núñez", "nunez"),
    ("Dvořák", "dvorak"), ("O'Brien", "obrien"), ("Lindqvist", "lindqvist"), ("Smith", "smith"),
)  # fmt: skip
# (city, country, zip_code, province or None)
CITIES = (
    ("Helsinki", "FI", "00100", "Uusimaa"),
    ("Espoo", "FI", "02100", "Uusimaa"),
    ("Jyväskylä", "FI", "40100", "Keski-Suomi"),
    ("Tampere", "FI", "33100", None),
    ("London", "GB", "EC4N 6AP", None),
    ("Oxford", "GB", "OX15 3PW", "Oxfordshire"),
    ("Tromsø", "NO", "9008", "Troms"),
    ("Zürich", "CH", "8001", None),
    ("東京", "JP", "100-0001", "東京都"),
    ("San Francisco", "US", "94103", "California"),
)
STREETS = ("Mannerheimintie", "Hämeentie", "Baker Street", "Cannon Street", "Bahnhofstraße")
LANGUAGES = ("fi", "en", "sv", "ja", "de")
GENDERS = ("F", "M", "X")
MAILING_LISTS = ("newsletter", "offers", "events", "b2b")
CUSTOMER_TAGS = ("vip", "student", "staff", "b2b", "lapsed")
CAMPAIGN_KEYS = tuple(f"CA-{k}" for k in range(1, 13))
SEGMENTS = ("gold", "silver", "bronze", "Kultainen ä", "🎯 target")
LABELS = ("alpha", "beta", "gamma", "délta", "ω")
PROFILE_NAMES = ("Kimi", "Ääni", "Zoë", "東京", "plain")

ADJECTIVES = ("Classic", "Cosy", "Nordic", "Kaunis", "Zoë's", "東京", "Tiny", "Grand")
NOUNS = ("Notebook", "Mug", "Sauna Towel", "Tote", "Kahvikuppi", "Party Pack 🎉", "Lamp", "Scarf")
# (category, category_id)
CATEGORIES = (
    ("Children's Books", "1619"),
    ("Kitchen", "2001"),
    ("Textiles", "2002"),
    ("Stationery", "2003"),
    ("Lighting", "2004"),
    ("Kodin sisustus", "2005"),
)
BRANDS = ("Lewis Carroll", "Marimekko", "Iittala", "Muji", "Fjällräven", "Acme")
VENDORS = ("Penguin Books", "Nordic Supply Oy", "Tokyo Trading 東京", "Acme Wholesale")
PRODUCT_TYPES = ("Paperback", "Hardcover", "Home", "Apparel", "Gift")
UNITS = ("pcs", "kg", "m")
PRODUCT_TAGS = ("new", "sale", "eco", "bestseller", "limited")

SALE_SHOPS = (*SHOPS, "WEB")
PAYMENT_METHODS = ("Credit Card", "Invoice", "MobilePay", "Cash", "Gift Card")
SHIPPING_METHODS = ("Posti", "DHL Express", "Pickup")
COUPONS = ("WELCOME10", "SUMMER", "ÄLYPÄIVÄ")
DECIMAL_QUANTITIES = (1.5, 0.25, 2.5)
# Most sales are COMPLETE, as in a real shop.
WEIGHTED_SALE_STATES = (*SALE_STATES, "COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE")
EXCHANGE_RATES = (1.0, 0.8567, 11.4321, 1.0832)

MAIL_URLS = ("https://www.example.com/", "https://www.example.com/offers?utm=mail")
DEFERRAL_REASONS = ("mailbox full", "greylisted", "rate limited")
BLOCK_REASONS = ("hard bounce", "spam complaint")


class _Style(NamedTuple):
    suffix: str
    offset_seconds: int
    fraction_digits: int = 0


# Weighted mix of datetime styles (one entry per twentieth).
DATETIME_STYLES = (
    *[_Style("Z", 0)] * 10,
    _Style("+02:00", 7200),
    _Style("+02:00", 7200),
    _Style("+03:00", 10800),
    _Style("+03:00", 10800),
    _Style("-05:00", -18000),
    *[_Style("", 0)] * 3,
    _Style("Z", 0, 3),
    _Style("+02:00", 7200, 6),
)


@dataclass
class Dataset:
    """Generated records per stream, and what they were generated from."""

    records: dict[str, list[Record]]
    company: str
    anchor: date
    seed: int
    sizes: dict[str, int] = field(default_factory=dict)

    def custom(self, name: str) -> str:
        """Full name of a custom field, e.g. ``custom("points") == "acme__points"``."""
        return f"{self.company}__{name}"


class _Clock:
    """Random instants in the window, formatted in the data set's mix of datetime styles.

    An instant is whole seconds since the window's start (00:00 UTC, WINDOW_DAYS - 1 days
    before the anchor day).
    """

    def __init__(self, anchor: date) -> None:
        first_day = anchor - timedelta(days=WINDOW_DAYS - 1)
        # "YYYY-MM-DDT" by day number; an offset can move the local date one day out of the window.
        self._day_prefixes = {
            k: f"{first_day + timedelta(days=k)}T" for k in range(-1, WINDOW_DAYS + 1)
        }
        self._times_of_day = _times_of_day()

    def random_instant(self, rnd: Callable[[], float]) -> int:
        """An instant in the window; one in eight is on the anchor day or the day before."""
        roll = rnd()
        if roll < 0.125:
            day = WINDOW_DAYS - 1 if roll < 0.0625 else WINDOW_DAYS - 2
            return day * 86400 + int(rnd() * 86400)
        return int(rnd() * WINDOW_DAYS * 86400)

    def format(self, instant: int, style: _Style, fraction: float = 0.0) -> str:
        suffix, offset, digits = style
        day, second = divmod(instant + offset, 86400)
        if digits:
            suffix = f".{int(fraction * 10**digits):0{digits}d}{suffix}"
        return f"{self._day_prefixes[day]}{self._times_of_day[second]}{suffix}"

    def format_in_random_style(self, instant: int, rnd: Callable[[], float]) -> str:
        style = DATETIME_STYLES[int(rnd() * len(DATETIME_STYLES))]
        return self.format(instant, style, rnd() if style.fraction_digits else 0.0)

    def random_datetime(self, rnd: Callable[[], float]) -> str:
        return self.format_in_random_style(self.random_instant(rnd), rnd)

    def utc(self, days: int, seconds: int) -> str:
        """``Z`` datetime ``days`` days after the window's first day plus ``seconds``."""
        return self.format(days * 86400 + seconds, DATETIME_STYLES[0])


@functools.lru_cache(maxsize=1)
def _times_of_day() -> list[str]:
    # Formatting is the bulk of generating an event: look the time of day up instead.
    return [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]


class _Context:
    """What every stream's generator needs: seed, clock and custom field names."""

    def __init__(self, seed: int, anchor: date, company: str) -> None:
        self.seed = seed
        self.clock = _Clock(anchor)
        self.field = {name: f"{company}__{name}" for name in CUSTOM_FIELDS}

    def random_for(self, stream: str) -> random.Random:
        # A string seed is hashed with SHA-512: stable across runs and PYTHONHASHSEED.
        return random.Random(f"{self.seed}:{stream}")


def generate_dataset(
    customers: int = 250,
    products: int = 60,
    sales: int = 150,
    events_per_type: int = 120,
    anchor: date | None = None,
    seed: int = 1,
    company: str = "acme",
    tricky_after: int | None = None,
) -> Dataset:
    """Generate the data set; ``sales`` counts transactions (1-4 rows each).

    ``anchor`` defaults to today's UTC date: every date falls in the WINDOW_DAYS days up to and
    including it. ``tricky_after`` adds TRICKY_FIELDS to the customers, relative to the first
    ``tricky_after`` of them (a discovery sample of one page of that size).
    """
    if anchor is None:
        anchor = datetime.now(timezone.utc).date()
    ctx = _Context(seed, anchor, company)
    # Millions of new dicts would trigger the cyclic garbage collector over and over (it then
    # costs as much as the generation itself); they hold no cycles, so pause it meanwhile.
    collector_was_enabled = gc.isenabled()
    gc.disable()
    try:
        records = _generate_streams(ctx, customers, products, sales, events_per_type)
    finally:
        if collector_was_enabled:
            gc.enable()
    if tricky_after is not None:
        add_tricky_fields(records["customers"], company, tricky_after)
    sizes = {
        "customers": customers,
        "products": products,
        "sales": sales,
        "events_per_type": events_per_type,
    }
    return Dataset(records=records, company=company, anchor=anchor, seed=seed, sizes=sizes)


def _generate_streams(
    ctx: _Context, customers: int, products: int, sales: int, events_per_type: int
) -> dict[str, list[Record]]:
    customer_records = _generate_customers(ctx, customers)
    product_records = _generate_products(ctx, products)
    records = {
        "customers": customer_records,
        "products": product_records,
        "sales": _generate_sales(ctx, sales, customer_records, product_records),
        "events": _generate_events(ctx, events_per_type, customer_records, product_records),
    }
    for stream, stream_records in records.items():
        _place_rare_flag(stream_records, ctx.field["rare_flag"], _RARE_FLAG_DATE_KEYS.get(stream))
    return records


def _pick(rnd: Callable[[], float], options: tuple[Any, ...]) -> Any:
    return options[int(rnd() * len(options))]


def _sample(rnd: Callable[[], float], options: tuple[str, ...], most: int) -> list[str]:
    """1..most distinct options, in the options' order."""
    count = 1 + int(rnd() * most)
    start = int(rnd() * len(options))
    chosen = {(start + k * 2) % len(options) for k in range(count)}
    return [options[k] for k in sorted(chosen)]


def _add_custom_fields(record: Record, rnd: Callable[[], float], ctx: _Context, index: int) -> None:
    names = ctx.field
    if rnd() < 0.7:
        record[names["points"]] = int(rnd() * 5000)
    if rnd() < 0.6:
        # An odd number of half-cents: never a whole number, so it stays a float in JSON.
        record[names["score"]] = (2 * int(rnd() * 50000) + 1) / 200
    if rnd() < 0.6:
        record[names["vip"]] = rnd() < 0.2
    if rnd() < 0.5:
        record[names["segment"]] = _pick(rnd, SEGMENTS)
    if rnd() < 0.4:
        record[names["last_seen"]] = ctx.clock.random_datetime(rnd)
    if rnd() < 0.4:
        record[names["labels"]] = _sample(rnd, LABELS, 3)
    if rnd() < 0.3:
        record[names["profile"]] = {
            "level": int(rnd() * 10),
            "name": _pick(rnd, PROFILE_NAMES),
            "badges": _sample(rnd, LABELS, 2),
        }
    if index % 3 == 0:
        record[names["mixed"]] = index if index % 2 else f"code-{index}"


# --- customers ---------------------------------------------------------------------------------


def _generate_customers(ctx: _Context, count: int) -> list[Record]:
    rnd = ctx.random_for("customers").random
    records = [_customer(index, rnd, ctx) for index in range(1, min(count, TEMPLATE_POOL) + 1)]
    templates = _Templates(records)
    indexes = range(len(records) + 1, count + 1)
    copies = templates.copies(range(len(records), count))
    records.extend(_customer_like(copy, index) for index, copy in zip(indexes, copies, strict=True))
    return records


def _customer_like(record: Record, index: int) -> Record:
    """Give ``record``, a copy of a template, the identifiers of customer number ``index``."""
    record["external_id"] = f"C{index:06d}"
    if "email" in record:
        names = record["email"].partition("@")[0].rpartition(".")[0]
        record["email"] = f"{names}.{index}@example.com"
    if "phone_number" in record:
        record["phone_number"] = f"+35840{index:07d}"
    if "cb_token" in record:
        record["cb_token"] = _cb_token(index)
    if "canonical_id" in record:
        record["canonical_id"] = f"CAN-{index:06d}"
    if "company" in record:
        record["company"], record["vat_number"] = _company(index)
    return record


def _customer(index: int, rnd: Callable[[], float], ctx: _Context) -> Record:
    first, first_ascii = _pick(rnd, FIRST_NAMES)
    last, last_ascii = _pick(rnd, LAST_NAMES)
    record: Record = {"external_id": f"C{index:06d}"}
    if rnd() < 0.97:
        record["first_name"] = first
    if rnd() < 0.97:
        record["last_name"] = last
    if rnd() < 0.93:
        record["email"] = f"{first_ascii}.{last_ascii}.{index}@example.com"
    if rnd() < 0.8:
        record["phone_number"] = f"+35840{index:07d}"
    for permission, probability in _PERMISSIONS:
        if rnd() < probability:
            record[permission] = rnd() < 0.6
    _add_address(record, rnd)
    _add_customer_profile(record, rnd, index)
    _add_customer_dates(record, rnd, ctx.clock)
    _add_custom_fields(record, rnd, ctx, index)
    return record


_PERMISSIONS = (("can_email", 0.9), ("can_sms", 0.8), ("can_post", 0.5), ("can_push", 0.4))


def _add_address(record: Record, rnd: Callable[[], float]) -> None:
    city, country, zip_code, province = _pick(rnd, CITIES)
    if rnd() < 0.85:
        record["city"] = city
        record["country"] = country
        record["zip_code"] = zip_code
        if province is not None:
            record["province"] = province
        if rnd() < 0.7:
            record["street_address"] = f"{_pick(rnd, STREETS)} {1 + int(rnd() * 120)}"
        if country == "US":
            record["state"] = "CA"


def _add_customer_profile(record: Record, rnd: Callable[[], float], index: int) -> None:
    if rnd() < 0.6:
        record["campaign_keys"] = _sample(rnd, CAMPAIGN_KEYS, 3)
    if rnd() < 0.5:
        record["mailing_lists"] = _sample(rnd, MAILING_LISTS, 2)
    if rnd() < 0.3:
        record["tags"] = _sample(rnd, CUSTOMER_TAGS, 2)
    if rnd() < 0.7:
        record["language"] = _pick(rnd, LANGUAGES)
    if rnd() < 0.6:
        record["gender"] = _pick(rnd, GENDERS)
    if rnd() < 0.3:
        record["can_profile"] = rnd() < 0.8
    if rnd() < 0.4:
        record["cb_token"] = _cb_token(index)
    if rnd() < 0.1:
        record["canonical_id"] = f"CAN-{index:06d}"
    if rnd() < 0.08:
        record["company"], record["vat_number"] = _company(index)


def _cb_token(index: int) -> str:
    return f"cbt-{index:08x}{index * 2654435761 % 0xFFFFFF:06x}"


def _company(index: int) -> tuple[str, str]:
    return f"Yritys {index % 97} Oy", f"FI{10000000 + index % 9999999:08d}"


def _add_customer_dates(record: Record, rnd: Callable[[], float], clock: _Clock) -> None:
    joined = clock.random_instant(rnd)
    record["date_joined"] = clock.format_in_random_style(joined, rnd)
    latest = (WINDOW_DAYS * 86400) - 1
    if rnd() < 0.7:
        login = joined + int(rnd() * (latest - joined))
        record["last_login"] = clock.format_in_random_style(login, rnd)
    if rnd() < 0.5:
        purchase = joined + int(rnd() * (latest - joined))
        record["last_purchase_date"] = clock.format_in_random_style(purchase, rnd)


# --- products ----------------------------------------------------------------------------------


def _generate_products(ctx: _Context, count: int) -> list[Record]:
    rnd = ctx.random_for("products").random
    return [_product(index, rnd, ctx) for index in range(1, count + 1)]


def _product(index: int, rnd: Callable[[], float], ctx: _Context) -> Record:
    external_id = f"P{index:05d}"
    category, category_id = _pick(rnd, CATEGORIES)
    price = 199 + int(rnd() * 200) * 100 + 90
    record: Record = {
        "external_id": external_id,
        "sku": f"SKU-{index:06d}",
        "title": f"{_pick(rnd, ADJECTIVES)} {_pick(rnd, NOUNS)}",
    }
    if rnd() < 0.8:
        record["ean"] = _ean13(index)
    if rnd() < 0.9:
        record["brand"] = _pick(rnd, BRANDS)
    if rnd() < 0.95:
        record["category"] = category
        record["category_id"] = category_id
    if rnd() < 0.8:
        record["type"] = _pick(rnd, PRODUCT_TYPES)
    if rnd() < 0.6:
        record["vendor"] = _pick(rnd, VENDORS)
    record["price"] = price
    if rnd() < 0.3:
        record["sale_price"] = price * 8 // 10
    record["url"] = f"https://www.example.com/product/{external_id}"
    if rnd() < 0.7:
        record["image"] = f"https://www.example.com/images/{external_id}.png"
    if rnd() < 0.95:
        record["visible"] = rnd() < 0.85
    _add_stock(record, rnd)
    _add_product_details(record, rnd, index)
    record["date"] = ctx.clock.random_datetime(rnd)
    _add_custom_fields(record, rnd, ctx, index)
    return record


def _ean13(index: int) -> str:
    digits = f"640{index % 10**9:09d}"
    weighted = sum(int(d) * (3 if k % 2 else 1) for k, d in enumerate(digits))
    return digits + str((10 - weighted % 10) % 10)


def _add_stock(record: Record, rnd: Callable[[], float]) -> None:
    if rnd() < 0.15:  # no stock information at all
        if rnd() < 0.5:
            record["in_stock"] = False
        return
    shops = _sample(rnd, SHOPS, 4)
    stock = [{"shop_id": shop, "quantity": int(rnd() * 61)} for shop in shops]
    record["shop_id"] = shops[0]
    record["in_stock"] = any(entry["quantity"] > 0 for entry in stock)
    record["stock"] = stock


def _add_product_details(record: Record, rnd: Callable[[], float], index: int) -> None:
    if rnd() < 0.7:
        record["language"] = _pick(rnd, LANGUAGES)
    if rnd() < 0.5:
        record["description"] = f"Tuote {index}: laadukas ja kestävä. Made with ♥."
    if rnd() < 0.4:
        record["tags"] = _sample(rnd, PRODUCT_TAGS, 3)
    if rnd() < 0.1:
        record["main_product_ids"] = [f"P{max(1, index - 1):05d}"]
    if rnd() < 0.15:
        record["recommendation_set_ids"] = [f"RS-{1 + index % 7}", f"RS-{1 + index % 5}"]
    if rnd() < 0.6:
        record["unit"] = _pick(rnd, UNITS)


# --- sales -------------------------------------------------------------------------------------


def _generate_sales(
    ctx: _Context, transactions: int, customers: list[Record], products: list[Record]
) -> list[Record]:
    rnd = ctx.random_for("sales").random
    rows: list[Record] = []
    row_ranges: list[range] = []  # rows of each template transaction
    for number in range(1, min(transactions, TEMPLATE_POOL) + 1):
        header = _sale_header(number, rnd, ctx, customers)
        transaction = _sale_rows(header, rnd, ctx, products, first_index=len(rows) + 1)
        row_ranges.append(range(len(rows), len(rows) + len(transaction)))
        rows.extend(transaction)
    if transactions > TEMPLATE_POOL:
        templates = _Templates(rows)
        dates = _date_pool(ctx.clock, rnd)
        links = _customer_pool(customers, rnd) or [{}]
        for number in range(TEMPLATE_POOL + 1, transactions + 1):
            template_rows = row_ranges[(number - 1) % TEMPLATE_POOL]
            copies = [templates.copy(position) for position in template_rows]
            sale_date = dates[int(rnd() * DATE_POOL)]
            customer = links[int(rnd() * len(links))]
            rows.extend(_transaction_like(copies, number, sale_date, customer))
    return rows


def _transaction_like(
    rows: list[Record], number: int, sale_date: str, customer: Record
) -> list[Record]:
    """Make ``rows``, copies of a template transaction's rows, transaction ``number``."""
    sale_id = f"S{number:05d}"
    for row_number, row in enumerate(rows, start=1):
        row["sale_external_id"] = sale_id
        row["sale_date"] = sale_date
        row["external_id"] = f"{sale_id}-{row_number}"
        _relink(row, customer, _SALE_CUSTOMER_KEYS)
    return rows


_SALE_CUSTOMER_KEYS = {
    "sale_customer_id": "external_id",
    "sale_email": "email",
    "sale_phone_number": "phone_number",
}


def _sale_header(
    number: int, rnd: Callable[[], float], ctx: _Context, customers: list[Record]
) -> Record:
    header: Record = {"sale_external_id": f"S{number:05d}"}
    if customers and rnd() < 0.9:
        customer = customers[int(rnd() * len(customers))]
        header["sale_customer_id"] = customer["external_id"]
        if "email" in customer and rnd() < 0.5:
            header["sale_email"] = customer["email"]
        if "phone_number" in customer and rnd() < 0.3:
            header["sale_phone_number"] = customer["phone_number"]
    header["sale_date"] = ctx.clock.random_datetime(rnd)
    header["sale_shop_id"] = _pick(rnd, SALE_SHOPS)
    if rnd() < 0.9:
        header["sale_payment_method"] = _pick(rnd, PAYMENT_METHODS)
    header["sale_state"] = _pick(rnd, WEIGHTED_SALE_STATES)
    header["sale_currency"] = "EUR"
    if rnd() < 0.2:
        header["sale_exchange_rate"] = _pick(rnd, EXCHANGE_RATES)
    if rnd() < 0.15:
        header["sale_discount"] = 100 * (1 + int(rnd() * 20))
    if rnd() < 0.3:
        header["sale_shipping"] = _pick(rnd, (0, 490, 990))
        header["sale_shipping_method"] = _pick(rnd, SHIPPING_METHODS)
    if rnd() < 0.1:
        header["sale_coupon_codes"] = _sample(rnd, COUPONS, 2)
    return header


def _sale_rows(
    header: Record,
    rnd: Callable[[], float],
    ctx: _Context,
    products: list[Record],
    first_index: int,
) -> list[Record]:
    sale_id = header["sale_external_id"]
    row_count = 1 + int(rnd() * 4)
    lines = [_sale_line(rnd, products) for _ in range(row_count)]
    sale_total = sum(line["total"] for line in lines)
    rows = []
    for number, line in enumerate(lines, start=1):
        row = {**header, "sale_total": sale_total, "external_id": f"{sale_id}-{number}", **line}
        if "sale_coupon_codes" in row:  # a list of each row's own
            row["sale_coupon_codes"] = list(row["sale_coupon_codes"])
        _add_custom_fields(row, rnd, ctx, first_index + number - 1)
        rows.append(row)
    return rows


def _sale_line(rnd: Callable[[], float], products: list[Record]) -> Record:
    line: Record = {}
    if products:
        product = products[int(rnd() * len(products))]
        line["product_id"] = product["external_id"]
        if rnd() < 0.7:
            line["product_sku"] = product["sku"]
        unit_price = product.get("sale_price", product["price"])
    else:
        unit_price = 100 * (1 + int(rnd() * 50))
    quantity = _pick(rnd, DECIMAL_QUANTITIES) if rnd() < 0.08 else 1 + int(rnd() * 3)
    discount = 50 * int(rnd() * 4) if rnd() < 0.15 else 0
    line["unit_price"] = unit_price
    line["quantity"] = quantity
    if discount:
        line["discount"] = discount
    line["total"] = round(unit_price * quantity) - discount
    return line


# --- events ------------------------------------------------------------------------------------


def _generate_events(
    ctx: _Context, per_type: int, customers: list[Record], products: list[Record]
) -> list[Record]:
    """``per_type`` events of each type, the types interleaved as in a live event stream.

    Event number ``position`` has type ``EVENT_TYPES[position % len(EVENT_TYPES)]``.
    """
    rnd = ctx.random_for("events").random
    total = per_type * len(EVENT_TYPES)
    pool = TEMPLATE_POOL * len(EVENT_TYPES)  # a multiple of the type count: types stay in place
    shared = _shared_event_dates(ctx.clock, per_type)
    events = []
    for position in range(min(total, pool)):
        event_type = EVENT_TYPES[position % len(EVENT_TYPES)]
        date_text = shared.get(position) or ctx.clock.random_datetime(rnd)
        event = _event(event_type, date_text, rnd, customers, products)
        _add_custom_fields(event, rnd, ctx, position + 1)
        events.append(event)
    if total > pool:
        events.extend(
            _copied_events(_Templates(events), range(pool, total), shared, rnd, ctx, customers)
        )
    return events


def _shared_event_dates(clock: _Clock, per_type: int) -> dict[int, str]:
    """Event position -> the one timestamp SHARED_TIMESTAMP_EVENTS events of each type share.

    The events that share it are spread over the stream.
    """
    text = clock.utc(WINDOW_DAYS - 1 - SHARED_EVENT_DAYS_BEFORE_ANCHOR, 12 * 3600)
    every = max(1, per_type // SHARED_TIMESTAMP_EVENTS)
    indexes = range(0, min(per_type, every * SHARED_TIMESTAMP_EVENTS), every)
    types = len(EVENT_TYPES)
    return {index * types + offset: text for index in indexes for offset in range(types)}


def _copied_events(
    templates: _Templates,
    positions: range,
    shared: dict[int, str],
    rnd: Callable[[], float],
    ctx: _Context,
    customers: list[Record],
) -> Iterator[Record]:
    """Events ``positions``: copies of templates, with their own date and customer."""
    dates = _date_pool(ctx.clock, rnd)
    links = _customer_pool(customers, rnd)
    for position, event in zip(positions, templates.copies(positions), strict=True):
        event["date"] = shared.get(position) or dates[int(rnd() * DATE_POOL)]
        if links:
            _relink(event, links[int(rnd() * len(links))], _EVENT_CUSTOMER_KEYS)
        yield event


_EVENT_CUSTOMER_KEYS = {"customer_id": "external_id", "email": "email"}


def _date_pool(clock: _Clock, rnd: Callable[[], float]) -> list[str]:
    """Random datetimes to pick from: cheaper than formatting one per copied record."""
    return [clock.random_datetime(rnd) for _ in range(DATE_POOL)]


def _customer_pool(customers: list[Record], rnd: Callable[[], float]) -> list[Record]:
    """The identifiers of up to CUSTOMER_POOL random customers, for copied records to link to.

    Picking among a million customers' own dicts is slow for the memory cache; these few fit.
    """
    count = min(len(customers), CUSTOMER_POOL)
    chosen = (customers[int(rnd() * len(customers))] for _ in range(count))
    return [
        {key: c[key] for key in ("external_id", "email", "phone_number") if key in c}
        for c in chosen
    ]


def _event(
    event_type: str,
    date_text: str,
    rnd: Callable[[], float],
    customers: list[Record],
    products: list[Record],
) -> Record:
    event: Record = {"type": event_type, "date": date_text}
    if customers:
        customer = customers[int(rnd() * len(customers))]
        event["customer_id"] = customer["external_id"]
        if "email" in customer and (event_type.startswith("MAIL") or rnd() < 0.5):
            event["email"] = customer["email"]
    campaign = 1 + int(rnd() * 40)
    if event_type in ("MAIL_OPEN", "MAIL_CLICK", "AUTOMATED_CAMPAIGN", "MAIL_UNSUBSCRIBE"):
        event["campaign_id"] = f"CMP-{campaign}"
    if event_type.startswith("MAIL"):
        event["mailing_id"] = f"M-{campaign}-{1 + int(rnd() * 3)}"
    if event_type == "MAIL_CLICK":
        event["url"] = _pick(rnd, MAIL_URLS)
    if event_type in ("BASKET_ADD", "BROWSE") and products:
        product = products[int(rnd() * len(products))]
        if event_type == "BASKET_ADD" or rnd() < 0.6:
            event["product_id"] = product["external_id"]
        event["url"] = product["url"]
    if event_type == "BASKET_ADD":
        event["quantity"] = 1 + int(rnd() * 2)
    if event_type == "MAIL_DEFERRED":
        event["reason"] = _pick(rnd, DEFERRAL_REASONS)
    if event_type == "MAIL_BLOCKED":
        event["reason"] = _pick(rnd, BLOCK_REASONS)
    return event


# --- copies of templates --------------------------------------------------------------------


class _Templates:
    """Records to copy, cyclically, once a stream has TEMPLATE_POOL of them."""

    def __init__(self, records: list[Record]) -> None:
        self._records = records[:]
        self._nested_keys = [
            tuple(key for key, value in record.items() if isinstance(value, (list, dict)))
            for record in self._records
        ]

    def copy(self, position: int) -> Record:
        """A copy of template ``position`` (modulo the pool) that shares no list or dict with it."""
        position %= len(self._records)
        template = self._records[position]
        copy = template.copy()
        for key in self._nested_keys[position]:
            copy[key] = _copy_nested(template[key])
        return copy

    def copies(self, positions: range) -> Iterator[Record]:
        """``copy(position)`` for each position; the hot loop of generating a large data set."""
        records, nested_keys, size = self._records, self._nested_keys, len(self._records)
        for position in positions:
            position %= size
            copy = records[position].copy()
            for key in nested_keys[position]:
                copy[key] = _copy_nested(copy[key])
            yield copy


def _copy_nested(value: list[Any] | dict[str, Any]) -> list[Any] | dict[str, Any]:
    """Copy of a list or dict, and of the lists and dicts in it (nesting is at most two deep)."""
    if type(value) is list:
        return [item.copy() if type(item) is dict else item for item in value]
    return {key: item.copy() if type(item) is list else item for key, item in value.items()}


def _relink(record: Record, customer: Record, keys: dict[str, str]) -> None:
    """Point ``record``'s customer fields (record key -> customer key) at ``customer``.

    Only keys the record already has are set, so its shape stays the template's.
    """
    for record_key, customer_key in keys.items():
        if record_key in record:
            if customer_key in customer:
                record[record_key] = customer[customer_key]
            else:
                del record[record_key]


# --- rare field --------------------------------------------------------------------------------

_RARE_FLAG_DATE_KEYS = {"sales": "sale_date", "events": "date"}


def _place_rare_flag(records: list[Record], name: str, date_key: str | None) -> None:
    """Put ``name`` on a few records in the last fifth of the stream.

    For dated streams take the tail's latest records, so they are also in the last fifth when
    the stream is read in date order.
    """
    if not records:
        return
    tail = range(len(records) - max(1, len(records) // 5), len(records))
    if date_key is None:
        chosen = list(tail)[-1 :: -max(1, len(tail) // RARE_FLAG_RECORDS)]
    else:
        # The latest of the tail's last few thousand: enough to be in the last fifth by date.
        candidates = tail[-RARE_FLAG_CANDIDATES:]
        chosen = sorted(candidates, key=lambda k: _instant_key(records[k][date_key]), reverse=True)
    for position in chosen[:RARE_FLAG_RECORDS]:
        records[position][name] = True


def _instant_key(text: str) -> float:
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


# --- tricky fields -------------------------------------------------------------------------------


def add_tricky_fields(records: list[Record], company: str, first: int) -> None:
    """Give ``records`` the TRICKY_FIELDS, placed relative to the first ``first`` records."""
    name = {field: f"{company}__{field}" for field in TRICKY_FIELDS}
    for position, record in enumerate(records):
        beyond = position >= first
        if beyond and position % 3 == 0:
            record[name["late_flag"]] = position % 2 == 0
        if position % 4 == 0:
            record[name["code"]] = f"K-{position}"
        elif position % 4 == 2:
            record[name["code"]] = position
        record[name["amount"]] = position * 100 + 0.25 if beyond else position * 100
        if position % 3 == 1:
            record[name["address"]] = {
                "street": f"Katu {position}",
                "floor": position % 7,
                "verified": position % 2 == 1,
                "since": f"2025-0{1 + position % 9}-1{position % 10}T08:30:00+02:00",
            }
        if position % 4 == 3:
            record[name["mixed_list"]] = ["one", position, 2.5]
    if len(records) > first + 1:
        records[first + 1][name["amount"]] = "unknown"  # a value discovery never saw
