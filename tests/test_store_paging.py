"""S3 answers a listing 1,000 keys at a time: the store follows the continuation tokens to the
last page (moto server, S3's own page size). Kept out of `make mutation`'s test selection (it
takes seconds to fill the bucket); tests/test_store_s3.py pages with a small page size there."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import boto3

from steps.core.store import S3Store


def test_a_listing_past_1000_keys_has_every_key(bucket):
    s3 = boto3.client("s3")
    keys = [f"layout/j/pages/k{n:04d}.png" for n in range(1003)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=f"p/{key}", Body=b""), keys))
    s3.put_object(Bucket=bucket, Key="p/layout/other.png", Body=b"")
    store = S3Store(f"s3://{bucket}/p")
    assert store.list_page_size == 1000
    first = s3.list_objects_v2(Bucket=bucket, Prefix="p/layout/j/")
    assert first["IsTruncated"] and first["KeyCount"] == 1000   # S3's page size, as moto keeps it
    assert store.list("layout/j/") == keys
