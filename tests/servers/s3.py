"""A local S3 (moto's standalone server) holding a bucket laid out exactly like ``pmc-oa-opendata``.

``start_moto()`` runs moto's server on 127.0.0.1 at a free port. ``PmcBucketLoader`` creates the
bucket with the public-read policy of the real one and uploads article versions as PMC does, in
the shapes recorded in ``tests/data/recorded/pmc-bucket/`` (see its PROVENANCE.md):

    PMC<id>.<v>/PMC<id>.<v>.xml, PMC<id>.<v>.json, <media files>
    metadata/PMC<id>.<v>.json        (the 16 fields of the real objects; s3://…?md5=<hex> URLs;
                                      author manuscripts: is_pmc_openaccess false, license TDM)
    inventory-reports/pmc-oa-opendata/metadata/<YYYY-MM-DDT01-00Z>/manifest.json
    inventory-reports/pmc-oa-opendata/metadata/data/<uuid>.csv.gz   (no header; fileSchema
                                      "Bucket, Key, LastModifiedDate, ETag")
    inventory-reports/pmc-oa-opendata/metadata/hive/…   (the Athena mirror next to the dated folders)

Objects are updated in place (``add`` again) and the inventory lags: a report lists the ETags
the metadata objects had when it was made.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import struct
import uuid
import zlib
from dataclasses import dataclass, field

import boto3
import httpx
from moto.server import ThreadedMotoServer

BUCKET = "pmc-oa-opendata"
INVENTORY = f"inventory-reports/{BUCKET}/metadata"
FILE_SCHEMA = "Bucket, Key, LastModifiedDate, ETag"
"""The recorded manifest's ``fileSchema`` (four columns; no ``Size``)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto() -> tuple[ThreadedMotoServer, str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its buckets in process-wide state that outlives a stopped server: start empty.
    httpx.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return server, endpoint


def png(width: int, height: int, shade: int) -> bytes:
    """A small valid grey PNG (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class ArticleVersion:
    pmcid: str
    version: int
    xml: bytes
    license_code: str | None = "CC BY"
    retracted: bool = False
    media: dict[str, bytes] = field(default_factory=dict)
    modified: str = "2026-11-01T09:00:00.000Z"
    """LastModifiedDate of its metadata object in the inventory."""

    @property
    def prefix(self) -> str:
        return f"{self.pmcid}.{self.version}"

    @property
    def manuscript(self) -> bool:
        """Author manuscripts are released for text mining (``TDM``), outside the open-access subset."""
        return self.license_code == "TDM"

    def metadata(self) -> dict[str, object]:
        """The metadata JSON, with the fields, order and types of the real objects."""
        xml_key = f"{self.prefix}/{self.prefix}.xml"
        number = int(self.pmcid[3:])
        return {
            "pmcid": self.pmcid,
            "version": self.version,
            "pmid": None,
            "doi": None,
            "mid": f"NIHMS{number}" if self.manuscript else None,
            "title": None,
            "citation": None,
            "is_pmc_openaccess": not self.manuscript,
            "is_manuscript": self.manuscript,
            "is_historical_ocr": False,
            "is_retracted": self.retracted,
            "license_code": self.license_code,
            "xml_url": f"s3://{BUCKET}/{xml_key}?md5={md5(self.xml)}",
            "text_url": None,
            "pdf_url": None,
            "media_urls": [
                f"s3://{BUCKET}/{self.prefix}/{name}?md5={md5(data)}" for name, data in self.media.items()
            ],
        }


class PmcBucketLoader:
    def __init__(self, endpoint: str) -> None:
        self.s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        self.s3.create_bucket(Bucket=BUCKET)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
                }
            ],
        }
        self.s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType=content_type)

    def add(self, article: ArticleVersion) -> bytes:
        """Upload one article version; returns its metadata JSON bytes."""
        metadata = json.dumps(article.metadata(), indent=1).encode()
        self.put(f"{article.prefix}/{article.prefix}.xml", article.xml, "application/xml")
        self.put(f"{article.prefix}/{article.prefix}.json", metadata, "application/json")
        self.put(f"metadata/{article.prefix}.json", metadata, "application/json")
        for name, data in article.media.items():
            self.put(f"{article.prefix}/{name}", data, "image/png")
        return metadata

    def add_inventory(self, folder: str, articles: list[ArticleVersion]) -> None:
        """A daily inventory report ``folder`` (``2026-11-24T01-00Z``) listing the metadata objects."""
        lines = []
        for article in articles:
            metadata = json.dumps(article.metadata(), indent=1).encode()
            key = f"metadata/{article.prefix}.json"
            lines.append(f'"{BUCKET}","{key}","{article.modified}","{md5(metadata)}"')
        data = gzip.compress(("\n".join(lines) + "\n").encode())
        data_key = f"{INVENTORY}/data/{uuid.uuid5(uuid.NAMESPACE_URL, folder)}.csv.gz"
        self.put(data_key, data, "application/gzip")
        manifest = {
            "sourceBucket": BUCKET,
            "destinationBucket": f"arn:aws:s3:::{BUCKET}",
            "version": "2016-11-30",
            "creationTimestamp": "1764032400000",
            "fileFormat": "CSV",
            "fileSchema": FILE_SCHEMA,
            "files": [{"key": data_key, "size": len(data), "MD5checksum": md5(data)}],
        }
        self.put(f"{INVENTORY}/{folder}/manifest.json", json.dumps(manifest).encode(), "application/json")
        self.put(f"{INVENTORY}/hive/dt={folder}/symlink.txt", data_key.encode(), "text/plain")
