"""The CRM's history and the clerks' manual ERP entries, generated vectorised per day.

Every entity created on day d is drawn from its own random stream (seed, d, kind), so a
world can be extended one day at a time and the first N days never change.
Each entity carries its whole future (stage changes, close, deletion, the clerk's order),
so the state on any day is a filter on timestamps.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import reference as ref
from .config import BASE_COMPANIES_PER_DAY, BASE_CONTACTS_PER_DAY, BASE_DEALS_PER_DAY, WorldConfig

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
ID_STRIDE = 10_000_000  # ids are (day+1) * ID_STRIDE + sequence: stable when the world grows
ORPHAN_COMPANY_ID = 999_999_999


def day_start_ms(cfg: WorldConfig, day: int) -> int:
    start = dt.datetime.combine(cfg.start_date, dt.time(), tzinfo=dt.timezone.utc)
    return int(start.timestamp() * 1000) + day * DAY_MS


def _rng(cfg: WorldConfig, day: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, day, stream])


def _business_time(rng: np.random.Generator, base_ms: np.ndarray | int, n: int) -> np.ndarray:
    """A time during business hours (08:00–18:00 UTC) on the day starting at base_ms."""
    return np.asarray(base_ms) + 8 * HOUR_MS + rng.integers(0, 10 * HOUR_MS, n)


def _pick(rng: np.random.Generator, mask: np.ndarray, rate: float) -> np.ndarray:
    """Choose rows among `mask` with probability `rate` (a boolean mask)."""
    return mask & (rng.random(mask.shape[0]) < rate)


@dataclass
class History:
    companies: pd.DataFrame
    contacts: pd.DataFrame
    deals: pd.DataFrame
    customers: pd.DataFrame      # ERP customers keyed by clerks
    orders: pd.DataFrame         # ERP orders keyed by clerks
    missing_orders: pd.DataFrame  # closed-won deals the clerks forgot to key
    bulk_update_ms: int | None   # the millisecond that stamps the bulk company update


def generate_history(cfg: WorldConfig, through_day: int) -> History:
    """All entities created on days 0..through_day (inclusive), with their futures."""
    companies = pd.concat([_companies(cfg, d) for d in range(through_day + 1)], ignore_index=True)
    contacts = pd.concat(
        [_contacts(cfg, d, companies[companies.day <= d]) for d in range(through_day + 1)], ignore_index=True
    )
    deals = pd.concat([_deals(cfg, d, companies[companies.day <= d]) for d in range(through_day + 1)],
                      ignore_index=True)
    customers, orders, missing = _manual_erp(cfg, deals, companies)
    companies = _company_events(cfg, companies, deals, customers)
    bulk_day = cfg.days // 3
    bulk_ms = day_start_ms(cfg, bulk_day) + 21 * HOUR_MS if bulk_day <= through_day else None
    return History(companies, contacts, deals, customers, orders, missing, bulk_ms)


def _companies(cfg: WorldConfig, day: int) -> pd.DataFrame:
    rng = _rng(cfg, day, 1)
    n = int(rng.poisson(BASE_COMPANIES_PER_DAY * cfg.scale))
    ids = (day + 1) * ID_STRIDE + np.arange(n)
    a, b = rng.choice(ref.NAME_A, n), rng.choice(ref.NAME_B, n)
    tag = np.array([np.base_repr(int(i), 36) for i in ids], dtype=object)
    suffix = rng.choice(ref.SUFFIX, n)
    name = pd.Series(a).str.cat([pd.Series(b), pd.Series(tag), pd.Series(suffix)], sep=" ")
    slug = (pd.Series(a) + pd.Series(b) + pd.Series(tag)).str.lower()
    country = rng.choice(ref.COUNTRIES, n, p=ref.COUNTRY_WEIGHTS)
    has_tax = rng.random(n) < 0.4
    tax = pd.Series(country).str.cat(pd.Series(rng.integers(10**8, 10**9, n).astype(str)))
    return pd.DataFrame({
        "id": ids.astype("int64"),
        "day": day,
        "created_ms": _business_time(rng, day_start_ms(cfg, day), n).astype("int64"),
        "name": name.to_numpy(),
        "domain": (slug + ".example").to_numpy(),
        "country": country,
        "industry": rng.choice(ref.INDUSTRIES, n),
        "tax_id": np.where(has_tax, tax.to_numpy(), None),
    })


def _contacts(cfg: WorldConfig, day: int, companies: pd.DataFrame) -> pd.DataFrame:
    rng = _rng(cfg, day, 2)
    n = int(rng.poisson(BASE_CONTACTS_PER_DAY * cfg.scale)) if len(companies) else 0
    ids = (day + 1) * ID_STRIDE + np.arange(n)
    comp = companies.iloc[rng.integers(0, len(companies), n)] if n else companies.iloc[:0]
    first, last = rng.choice(ref.FIRST, n), rng.choice(ref.LAST, n)
    local = pd.Series(first).str.lower() + "." + pd.Series(last).str.lower() + "." + pd.Series(ids.astype(str))
    email = (local + "@" + comp["domain"].reset_index(drop=True)).to_numpy(dtype=object)
    company_id = comp["id"].to_numpy().astype("int64")
    created = _business_time(rng, day_start_ms(cfg, day), n)

    malformed = _pick(rng, np.ones(n, bool), cfg.rate("malformed_email"))
    email = np.where(malformed, (local + " at " + comp["domain"].reset_index(drop=True)).to_numpy(dtype=object), email)
    orphan = _pick(rng, ~malformed, cfg.rate("orphan_contact"))
    company_id = np.where(orphan, ORPHAN_COMPANY_ID, company_id)
    # a contact re-keyed with the email of an earlier, clean contact of the same day
    duplicate = _pick(rng, ~(malformed | orphan), cfg.rate("duplicate_contact"))
    duplicate[0:1] = False
    clean_idx = np.flatnonzero(~(malformed | orphan | duplicate))
    duplicate_of = np.full(n, -1, dtype="int64")
    for i in np.flatnonzero(duplicate):
        earlier = clean_idx[clean_idx < i]
        if len(earlier):
            j = earlier[rng.integers(0, len(earlier))]
            email[i], duplicate_of[i] = email[j], ids[j]
            created[i] = max(created[i], created[j] + 60_000)  # re-keyed after the original
    duplicate &= duplicate_of >= 0
    deleted = _pick(rng, ~(malformed | orphan | duplicate), cfg.rate("deleted_contact"))
    deleted_ms = np.where(deleted, created + rng.integers(1, 20, n) * DAY_MS, -1)
    phone = np.char.add("+1-555-", rng.integers(1_000_000, 9_999_999, n).astype(str))
    df = pd.DataFrame({
        "id": ids.astype("int64"), "day": day, "created_ms": created.astype("int64"),
        "email": email, "firstname": first, "lastname": last, "phone": phone,
        "company_id": company_id.astype("int64"), "deleted_ms": deleted_ms.astype("int64"),
        "duplicate_of": duplicate_of,
        "defect": np.select([malformed, orphan, duplicate, deleted],
                            ["malformed_email", "orphan_contact", "duplicate_contact", "deleted_contact"], None),
    })
    return df


def _deals(cfg: WorldConfig, day: int, companies: pd.DataFrame) -> pd.DataFrame:
    rng = _rng(cfg, day, 3)
    n = int(rng.poisson(BASE_DEALS_PER_DAY * cfg.scale)) if len(companies) else 0
    ids = (day + 1) * ID_STRIDE + np.arange(n)
    # deals favour recent companies (new logos buy first)
    weights = np.exp((companies["day"].to_numpy() - day) / 20.0)
    comp_idx = rng.choice(len(companies), n, p=weights / weights.sum()) if n else np.array([], int)
    company_id = companies["id"].to_numpy()[comp_idx].astype("float64")
    created = _business_time(rng, day_start_ms(cfg, day), n)
    # a short sales cycle (about a week and a half): a new world has closed deals within days
    t1 = created + rng.integers(0, 3, n) * DAY_MS + rng.integers(HOUR_MS, 4 * HOUR_MS, n)
    t2 = t1 + rng.integers(1, 5, n) * DAY_MS + rng.integers(0, HOUR_MS, n)
    close = t2 + rng.integers(1, 8, n) * DAY_MS + rng.integers(0, HOUR_MS, n)
    won = rng.random(n) < 0.4
    amount = np.round(np.exp(rng.normal(np.log(15_000), 0.9, n)), 2)
    big = rng.random(n) < 0.01  # large deals that need approval before posting
    amount = np.where(big, np.round(rng.uniform(260_000, 900_000, n), 2), amount)
    currency = rng.choice(ref.CURRENCIES, n, p=ref.CURRENCY_WEIGHTS).astype(object)

    # injected defects, chosen among the rows where they are observable
    defect = np.full(n, None, dtype=object)
    free = np.ones(n, bool)
    for kind, eligible in (("missing_amount", won), ("missing_company", won),
                           ("negative_amount", np.ones(n, bool)), ("unknown_currency", np.ones(n, bool))):
        chosen = _pick(rng, eligible & free, cfg.rate(kind))
        defect[chosen] = kind
        free &= ~chosen
    amount_s = np.char.mod("%.2f", amount).astype(object)
    amount_s = np.where(defect == "missing_amount", None, amount_s)
    amount_s = np.where(defect == "negative_amount", np.char.mod("%.2f", -amount).astype(object), amount_s)
    currency = np.where(defect == "unknown_currency", rng.choice(["XXY", "EURO", "usd$"], n), currency)
    company_id = np.where(defect == "missing_company", np.nan, company_id)
    deleted = _pick(rng, free & ~won, cfg.rate("deleted_deal"))
    defect[deleted] = "deleted_deal"
    deleted_ms = np.where(deleted, close + rng.integers(1, 5, n) * DAY_MS, -1)

    return pd.DataFrame({
        "id": ids.astype("int64"), "day": day, "created_ms": created.astype("int64"),
        "dealname": [f"Deal {i}" for i in ids], "company_id": pd.array(company_id, dtype="Int64"),
        "amount": amount_s, "amount_value": amount, "currency": currency, "pipeline": "default",
        "t1_ms": t1.astype("int64"), "t2_ms": t2.astype("int64"), "close_ms": close.astype("int64"),
        "won": won, "expected_close": created + 30 * DAY_MS, "deleted_ms": deleted_ms.astype("int64"),
        "defect": defect,
    })


def _manual_erp(cfg: WorldConfig, deals: pd.DataFrame, companies: pd.DataFrame):
    """Clerks key ERP customers and orders for closed-won deals, hours to days late."""
    golive_ms = day_start_ms(cfg, (cfg.golive - cfg.start_date).days)
    valid_won = deals[deals.won & deals.defect.isna()].copy()
    # one draw per deal, keyed by deal id, so extending the world does not reshuffle
    u = _uniforms(cfg.seed, valid_won["id"].to_numpy(), 6)
    before = valid_won["close_ms"].to_numpy() < golive_ms
    stray = ~before & (u[:, 0] < cfg.rate("manual_order_after_golive"))
    keyed = before | stray
    forgot = before & (u[:, 1] < cfg.rate("missing_order"))
    keyed &= ~forgot
    delay_h = np.clip(np.exp(np.log(18) + 0.9 * _normal(u[:, 2])), 1, 120)
    created = valid_won["close_ms"].to_numpy() + (delay_h * HOUR_MS).astype("int64")
    mistyped = keyed & (u[:, 3] < cfg.rate("amount_mismatch"))
    wrong_ccy = keyed & ~mistyped & (u[:, 3] > 1 - cfg.rate("currency_mismatch"))
    unlinked = keyed & (u[:, 4] < cfg.rate("unlinked_manual_order"))
    unlinked |= stray  # after go-live the clerk does not know the platform's conventions
    duplicate = before & keyed & ~unlinked & (u[:, 5] < cfg.rate("duplicate_order"))

    amount = valid_won["amount_value"].to_numpy()
    typed_amount = np.where(mistyped, np.round(amount * np.where(u[:, 2] < 0.5, 1.1, 0.9), 2), amount)
    currency = valid_won["currency"].to_numpy().astype(object)
    typed_ccy = np.where(wrong_ccy, np.where(currency == "USD", "EUR", "USD"), currency)
    deal_ids = valid_won["id"].to_numpy()
    kind = np.select([mistyped, wrong_ccy, stray], ["amount_mismatch", "currency_mismatch",
                                                    "manual_order_after_golive"], None)
    orders = pd.DataFrame({
        "order_number": ["SO-1" + str(i) for i in deal_ids],
        "deal_id": deal_ids, "company_id": valid_won["company_id"].astype("int64").to_numpy(),
        "crm_deal_id": np.where(unlinked, None, deal_ids.astype(str)),
        "created_ms": created, "currency": typed_ccy, "total_amount": typed_amount,
        "deal_amount": amount, "deal_currency": currency, "unlinked": unlinked, "defect": kind,
        "stray": stray,  # also listed when the order has another defect too
    })[keyed]
    dups = orders[duplicate[keyed]].copy()
    dups["order_number"] = "SO-2" + dups["deal_id"].astype(str)
    dups["crm_deal_id"] = None
    dups["created_ms"] = dups["created_ms"] + 26 * HOUR_MS
    dups["defect"] = "duplicate_order"
    dups["unlinked"] = True
    dups["stray"] = False
    orders = pd.concat([orders, dups], ignore_index=True)
    missing = valid_won[forgot][["id", "close_ms", "amount_value", "currency"]]

    # the ERP customer is keyed just before the company's first order
    first = orders.sort_values("created_ms").drop_duplicates("company_id")
    comp = companies.set_index("id").loc[first["company_id"].to_numpy()]
    cu = _uniforms(cfg.seed + 1, first["company_id"].to_numpy(), 4)
    name = comp["name"].to_numpy().astype(object)
    variant = cu[:, 0] < 0.3   # case and punctuation: still the same name once normalised
    name = np.where(variant, np.char.upper(name.astype(str)) + ".", name)
    name_mismatch = cu[:, 1] < cfg.rate("customer_name_mismatch")
    name = np.where(name_mismatch, "Old Name " + comp["name"].str.split(" ").str[2].to_numpy(), name)
    country = comp["country"].to_numpy().astype(object)
    country_mismatch = cu[:, 2] < cfg.rate("customer_country_mismatch")
    country = np.where(country_mismatch, np.where(country == "US", "CA", "US"), country)
    customers = pd.DataFrame({
        "customer_number": ["C1" + str(c) for c in first["company_id"]],
        "company_id": first["company_id"].to_numpy(),
        "name": name, "tax_id": comp["tax_id"].to_numpy(), "country": country,
        "currency": first["deal_currency"].to_numpy(),
        "crm_company_id": np.where(cu[:, 3] < 0.7, first["company_id"].astype(str).to_numpy(), None),
        "writeback": cu[:, 3] < 0.5,  # the clerk also typed the number into the CRM
        "created_ms": first["created_ms"].to_numpy() - 5 * 60_000,
        "defect": np.select([name_mismatch, country_mismatch],
                            ["customer_name_mismatch", "customer_country_mismatch"], None),
        "country_mismatch": country_mismatch,  # may come with a name mismatch: listed both
    })
    orders = orders.merge(customers[["company_id", "customer_number"]], on="company_id", how="left")
    return customers, orders, missing


def _company_events(cfg: WorldConfig, companies, deals, customers) -> pd.DataFrame:
    won = deals[deals.won & deals.company_id.notna()]
    first_win = won.groupby(won["company_id"].astype("int64"))["close_ms"].min()
    companies = companies.copy()
    companies["customer_ms"] = companies["id"].map(first_win + 60_000).fillna(-1).astype("int64")
    wb = customers[customers.writeback].set_index("company_id")
    companies["writeback_ms"] = companies["id"].map(wb["created_ms"] + HOUR_MS).fillna(-1).astype("int64")
    companies["erp_customer_number"] = companies["id"].map(wb["customer_number"])
    return companies


def _uniforms(seed: int, keys: np.ndarray, k: int) -> np.ndarray:
    """k uniform numbers per key, a pure function of (seed, key): splitmix64 hashing."""
    keys = np.asarray(keys, dtype=np.uint64)
    out = np.empty((keys.shape[0], k))
    with np.errstate(over="ignore"):
        for j in range(k):
            z = keys * np.uint64(0x9E3779B97F4A7C15) + np.uint64((seed * 1_000_003 + j * 7919) & 0xFFFFFFFF)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            out[:, j] = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return out


def _normal(u: np.ndarray) -> np.ndarray:
    """Standard normal from a uniform (a rough inverse CDF, good enough for delays)."""
    u = np.clip(u, 1e-9, 1 - 1e-9)
    return np.sqrt(2) * _erfinv(2 * u - 1)


def _erfinv(x: np.ndarray) -> np.ndarray:
    a = 0.147
    ln = np.log(1 - x * x)
    t = 2 / (np.pi * a) + ln / 2
    return np.sign(x) * np.sqrt(np.sqrt(t * t - ln / a) - t)
