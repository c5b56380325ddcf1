"""EC2 on-demand prices: the shipped table (the seeds' i3en, GPU sizes priced as listed, never scaled),
its refresh from the AWS price list (parsed from a recorded excerpt of the documented format), the date shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner import aws_price_list, aws_prices

EXCERPT = Path(__file__).parent / "data" / "aws_price_list_excerpt.json"


def test_the_seeds_own_type_and_the_documented_families_have_list_prices():
    assert aws_prices.on_demand("us-east-1", "i3en.2xlarge") == (0.904, f"list price as of {aws_prices.as_of()}")
    for t in ("i3en.large", "c6i.32xlarge", "c6id.8xlarge", "m6i.large", "r6i.2xlarge", "c7i.large", "g5.xlarge", "p4d.24xlarge"):
        price, source = aws_prices.on_demand("us-east-1", t)
        assert price > 0 and source.startswith("list price"), t


def test_gpu_sizes_are_priced_as_listed_and_never_scaled_from_the_smallest():
    assert aws_prices.on_demand("us-east-1", "g5.2xlarge")[0] == 1.212  # one GPU, as g5.xlarge (1.006), not 2 x 1.006
    assert aws_prices.on_demand("us-east-1", "g5.12xlarge")[0] == 5.672
    assert aws_prices.on_demand("us-west-2", "g5.xlarge")[0] == 1.006
    assert aws_prices.on_demand("us-west-2", "g5.2xlarge") is None  # unknown, rather than a wrong guess
    assert aws_prices.on_demand("us-west-2", "p4d.24xlarge") is None
    assert not aws_prices.scalable("g4dn") and not aws_prices.scalable("p4d") and not aws_prices.scalable("inf2")
    assert aws_prices.scalable("m6i") and aws_prices.scalable("c6id") and aws_prices.scalable("i3en")


def test_the_price_list_parser_keeps_linux_shared_on_demand_hours_only():
    doc = json.loads(EXCERPT.read_text())
    assert aws_price_list.rows_from_offer(doc) == [("us-east-1", "i3en.2xlarge", 0.904), ("us-east-2", "g5.2xlarge", 1.212)]
    # the Price List Query API (GetProducts) hands the same product and terms, one JSON string per product
    items = [json.dumps({"product": p, "terms": {"OnDemand": doc["terms"]["OnDemand"][sku]}})
             for sku, p in doc["products"].items()]
    assert aws_price_list.rows_from_products(items) == aws_price_list.rows_from_offer(doc)


def test_a_refreshed_table_carries_its_date_and_source_and_reads_back(tmp_path):
    out = tmp_path / "aws_on_demand.csv"
    assert aws_price_list.main(["--offer-file", str(EXCERPT), "--out", str(out), "--taken", "2031-02-03"]) == 0
    text = out.read_text()
    assert text.splitlines()[0].startswith("# EC2 ON-DEMAND LIST PRICES") and "AS OF 2031-02-03" in text.splitlines()[0]
    assert f"from {EXCERPT.name} (published 2024-06-05T00:00:00Z)" in text
    date, prices = aws_prices.load(out)
    assert date == "2031-02-03" and prices == {("us-east-1", "i3en.2xlarge"): 0.904, ("us-east-2", "g5.2xlarge"): 1.212}


def test_a_price_list_with_no_usable_rows_writes_nothing(tmp_path):
    out = tmp_path / "aws_on_demand.csv"
    (tmp_path / "empty.json").write_text(json.dumps({"products": {}, "terms": {"OnDemand": {}}}))
    with pytest.raises(SystemExit, match="no Linux on-demand prices"):
        aws_price_list.main(["--offer-file", str(tmp_path / "empty.json"), "--out", str(out)])
    assert not out.exists()


def test_dry_run_shows_the_date_the_prices_were_taken(aws, make_job):
    from runner import launch as launcher

    s = launcher.plan(make_job({"name": "dated", "command": "true", "instance_type": "i3en.2xlarge"}), None, cloud="aws").summary()
    assert s["on_demand_usd_per_hour"] == 0.904
    assert s["on_demand_prices_as_of"] == aws_prices.as_of() and aws_prices.as_of() in s["on_demand_price"]


pytest_plugins = ["aws_fixtures"]
