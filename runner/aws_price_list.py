"""`make prices`: EC2 on-demand list prices (Linux, shared tenancy) from the AWS price list into runner/data/aws_on_demand.csv.

Reads the Price List Query API (pricing:GetProducts, needs credentials and a network), or a downloaded
offer file (https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonEC2/current/REGION/index.json);
both hand products and their OnDemand terms in the price list's documented format.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from runner.aws_prices import TABLE

REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1")
# what a plain Linux VM of runner's launch is billed as; every other product of the same type is something else
PLAIN_LINUX = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
               "licenseModel": "No License required", "operation": "RunInstances"}
Row = tuple[str, str, float]  # (region, instance type, USD per hour)


def _row(product: Mapping, on_demand_terms: Mapping) -> Row | None:
    """One product and its OnDemand terms -> a row, or None when it is not a plain Linux on-demand hour."""
    attrs = product.get("attributes") or {}
    if product.get("productFamily", "Compute Instance") != "Compute Instance":
        return None
    if any(attrs.get(k) != v for k, v in PLAIN_LINUX.items()) or "BoxUsage" not in str(attrs.get("usagetype", "")):
        return None
    for term in on_demand_terms.values():
        for dim in (term.get("priceDimensions") or {}).values():
            usd = (dim.get("pricePerUnit") or {}).get("USD")
            if dim.get("unit") == "Hrs" and usd and float(usd) > 0:
                return str(attrs["regionCode"]), str(attrs["instanceType"]), round(float(usd), 6)
    return None


def rows_from_offer(doc: Mapping) -> list[Row]:
    """The rows of an offer file: {"products": {sku: product}, "terms": {"OnDemand": {sku: terms}}}."""
    on_demand = (doc.get("terms") or {}).get("OnDemand") or {}
    rows = (_row(p, on_demand.get(sku) or {}) for sku, p in (doc.get("products") or {}).items())
    return sorted({r for r in rows if r})


def rows_from_products(items: Iterable[str | Mapping]) -> list[Row]:
    """The rows of GetProducts' PriceList: one {"product": ..., "terms": {"OnDemand": ...}} per item (a JSON string)."""
    rows = set()
    for item in items:
        doc = json.loads(item) if isinstance(item, str) else item
        row = _row(doc.get("product") or {}, (doc.get("terms") or {}).get("OnDemand") or {})
        if row:
            rows.add(row)
    return sorted(rows)


def fetch(regions: Iterable[str]) -> list[Row]:
    """Every plain Linux on-demand price of `regions` from the Price List Query API (served from us-east-1)."""
    import boto3

    pricing = boto3.client("pricing", region_name="us-east-1")
    rows: list[Row] = []
    for region in regions:
        filters = [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in {**PLAIN_LINUX, "regionCode": region}.items()]
        for page in pricing.get_paginator("get_products").paginate(ServiceCode="AmazonEC2", Filters=filters):
            rows += rows_from_products(page["PriceList"])
    return sorted(set(rows))


def write_table(rows: list[Row], out: Path, taken: str, source: str) -> None:
    """The CSV runner ships, its first line carrying the date taken; written whole or not at all."""
    head = [
        f"# EC2 ON-DEMAND LIST PRICES, USD per instance-hour, AS OF {taken}: Linux, shared tenancy, no pre-installed software.",
        f"# Taken by `make prices` (python -m runner.aws_price_list) from {source}.",
        "# Not a quote: check https://aws.amazon.com/ec2/pricing/on-demand/ before relying on them. Spot prices are read live.",
        "region,instance_type,usd_per_hour",
    ]
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(head + [f"{r},{t},{p:g}" for r, t, p in rows]) + "\n")
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    """Refresh the price table; exits non-zero without touching it when no price was found."""
    ap = argparse.ArgumentParser(prog="python -m runner.aws_price_list", description=__doc__.splitlines()[0])
    ap.add_argument("--region", action="append", help=f"region to take (repeatable; default: {', '.join(REGIONS)})")
    ap.add_argument("--offer-file", type=Path, help="a downloaded offer file (index.json) instead of the API")
    ap.add_argument("--out", type=Path, default=TABLE, help="where to write (default: the shipped table)")
    ap.add_argument("--taken", default=datetime.now(timezone.utc).strftime("%Y-%m-%d"), help="the date to record")
    args = ap.parse_args(argv)
    if args.offer_file:
        doc = json.loads(args.offer_file.read_text())
        published = f" (published {doc['publicationDate']})" if doc.get("publicationDate") else ""
        rows, source = rows_from_offer(doc), f"{args.offer_file.name}{published}"
        if args.region:
            rows = [r for r in rows if r[0] in args.region]
    else:
        regions = args.region or list(REGIONS)
        rows, source = fetch(regions), f"the AWS Price List Query API (GetProducts), regions {', '.join(regions)}"
    if not rows:
        raise SystemExit(f"no Linux on-demand prices found in {source}; {args.out} is unchanged")
    write_table(rows, args.out, args.taken, source)
    print(f"{len(rows)} prices from {source} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
