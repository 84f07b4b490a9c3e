"""``harvest pmc``: the PMC Cloud Service, i.e. the public S3 bucket ``pmc-oa-opendata``.

Anonymous HTTPS and the plain S3 REST API (``ListObjectsV2``, ``GetObject``), no AWS SDK. Per
article version the bucket holds ``PMC<id>.<v>/PMC<id>.<v>.xml`` (JATS), media files and
``metadata/PMC<id>.<v>.json`` whose ``xml_url``/``media_urls`` are ``s3://pmc-oa-opendata/<key>?md5=<hex>``.

Selection (exactly one of):
  - ``ids``: PMCIDs, with a version (``PMC123.2``: that version) or without (the latest one,
    found by listing ``metadata/PMC123.``);
  - ``since``: versions new or changed since a date, from the newest daily inventory
    (``inventory-reports/pmc-oa-opendata/metadata/<date>/manifest.json`` and its gzipped CSVs);
  - ``all``: every article, by listing ``metadata/``.
Versions outside the open-access subset (``is_pmc_openaccess: false``: author manuscripts, whose
``license_code`` is ``TDM``) are left out unless ``include_manuscripts``. Then ``license``
(``commercial``, ``noncommercial`` or codes, comma-separated), ``skip_retracted`` and ``limit``
filter. Only the latest version of each article is taken, and with ``limit`` only as many metadata
objects are fetched as the limit needs.

The metadata JSON is authoritative: it sets ``version``, ``license`` (when its ``license_code`` is
not null; otherwise the XML's license stands, for the ``license`` filter too), ``commercial_use``,
``retracted`` and the open-access flags on the article row, whatever the XML says.

Integrity: every object is checked against the MD5 its metadata publishes (``?md5=``) and the
``ETag`` the bucket sends with it. A listing's or inventory's ETag is only a hint of which kept raw
copy is current: the inventory lags the bucket by up to a day and objects are updated in place, so
an object that differs from it has changed since, it is not corrupt.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

from lxml import etree

from pmcurate.harvest import licenses, store
from pmcurate.harvest.archive import (
    DecompressionBomb,
    Image,
    NotAnImage,
    attach_images,
    image_key,
    read_image,
)
from pmcurate.harvest.fetch import (
    FetchConfig,
    FetchError,
    HarvestInputError,
    HarvestInterrupted,
    HarvestSummary,
    Session,
    apply_source_license,
    gather_all,
    md5_hex,
    parse_document,
    plain_md5_etag,
    quarantine_record,
    sha256_hex,
    shard_name,
)
from pmcurate.harvest.jats import ParsedArticle
from pmcurate.harvest.source import register
from pmcurate.schema import COMMERCIAL_LICENSES, NONCOMMERCIAL_LICENSES

log = logging.getLogger(__name__)

SOURCE = "pmc"
BUCKET = "pmc-oa-opendata"
DEFAULT_BASE_URL = f"https://{BUCKET}.s3.amazonaws.com"
INVENTORY_PREFIX = f"inventory-reports/{BUCKET}/metadata/"
METADATA_KEY = re.compile(r"^metadata/(PMC\d+)\.(\d+)\.json$")
PMCID = re.compile(r"^(?:PMC)?(\d+)(?:\.(\d+))?$", re.IGNORECASE)
INVENTORY_FOLDER = re.compile(r"/(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z)/$")


@dataclass(frozen=True)
class PmcOptions:
    out: Path
    base_url: str = DEFAULT_BASE_URL
    ids: tuple[str, ...] = ()
    since: date | None = None
    all: bool = False
    license: str | None = None
    limit: int | None = None
    media: bool = False
    skip_retracted: bool = False
    include_manuscripts: bool = False
    batch_size: int = 100
    fetch: FetchConfig = field(default_factory=FetchConfig)


@dataclass(frozen=True)
class Candidate:
    """One article version to consider: its metadata key and, when listed, the key's ETag then."""

    pmcid: str
    version: int
    etag: str | None = None

    @property
    def key(self) -> str:
        return f"metadata/{self.pmcid}.{self.version}.json"


@dataclass
class Selected:
    candidate: Candidate
    metadata: dict[str, Any]
    metadata_md5: str
    license_pending: bool = False
    """The metadata has no license code: the ``license`` filter decides on the XML's license."""
    xml: bytes | None = None
    media: dict[str, bytes] = field(default_factory=dict)


class PmcBucket:
    """Keys and URLs of the bucket as served under ``base_url`` (virtual-host or path style)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def object_url(self, key: str) -> str:
        return f"{self.base_url}/{quote(key)}"

    def list_url(self) -> str:
        return f"{self.base_url}/"

    @staticmethod
    def parse_s3_url(url: str) -> tuple[str, str | None]:
        """``s3://pmc-oa-opendata/<key>?md5=<hex>`` → (key, md5)."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or parts.netloc != BUCKET or not parts.path.strip("/"):
            raise ValueError(f"not an s3://{BUCKET}/ URL: {url!r}")
        md5 = next((v for k, _, v in (p.partition("=") for p in parts.query.split("&")) if k == "md5"), None)
        return unquote(parts.path.lstrip("/")), md5 or None


def parse_pmcid(value: str) -> tuple[str, int | None]:
    """``PMC123``, ``123`` or ``PMC123.2`` → (``PMC123``, version or None)."""
    match = PMCID.match(value.strip())
    if not match:
        raise HarvestInputError(f"not a PMCID: {value!r}")
    return f"PMC{match.group(1)}", int(match.group(2)) if match.group(2) else None


def parse_list_page(page: bytes) -> tuple[list[tuple[str, str | None]], list[str], str | None]:
    """A ``ListObjectsV2`` answer → ((key, etag) pairs, common prefixes, next continuation token)."""
    root = etree.fromstring(page, parser=etree.XMLParser(resolve_entities=False, no_network=True))

    def text(node: etree._Element, name: str) -> str | None:
        found = node.find(f"{{*}}{name}")
        return found.text if found is not None else None

    contents = [(text(c, "Key") or "", plain_md5_etag(text(c, "ETag"))) for c in root.iterfind("{*}Contents")]
    prefixes = [text(p, "Prefix") or "" for p in root.iterfind("{*}CommonPrefixes")]
    truncated = (text(root, "IsTruncated") or "false").lower() == "true"
    token = text(root, "NextContinuationToken") if truncated else None
    return contents, prefixes, token


def parse_inventory_manifest(data: bytes) -> tuple[list[str], list[tuple[str, str | None]]]:
    """An S3 inventory ``manifest.json`` → (column names from ``fileSchema``, (file key, MD5) pairs)."""
    manifest = json.loads(data)
    if manifest.get("fileFormat", "CSV").upper() != "CSV":
        raise ValueError(f"inventory format {manifest.get('fileFormat')!r} is not CSV")
    columns = [c.strip() for c in manifest["fileSchema"].split(",")]
    files = [(f["key"], f.get("MD5checksum")) for f in manifest["files"]]
    return columns, files


def inventory_rows(data: bytes, columns: list[str]) -> Iterable[dict[str, str]]:
    """Rows of one gzipped, header-less inventory CSV (keys are URL-encoded in inventories)."""
    reader = csv.reader(io.StringIO(gzip.decompress(data).decode("utf-8")))
    for values in reader:
        row = dict(zip(columns, values, strict=False))
        if "Key" in row:
            row["Key"] = unquote(row["Key"])
        yield row


def license_filter(wanted: str | None) -> frozenset[str] | None:
    """``commercial``/``noncommercial``/comma-separated codes → the set of codes to keep."""
    if not wanted:
        return None
    codes: set[str] = set()
    for part in wanted.split(","):
        name = part.strip().lower()
        if name == "commercial":
            codes |= COMMERCIAL_LICENSES
        elif name == "noncommercial":
            codes |= NONCOMMERCIAL_LICENSES
        else:
            code = licenses.normalize_code(part)
            if code is None:
                raise HarvestInputError(f"unknown license selection {part!r}")
            codes.add(code)
    return frozenset(codes)


def latest_versions(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The highest version of each PMCID, ordered by PMCID number."""
    best: dict[str, Candidate] = {}
    for c in candidates:
        if c.pmcid not in best or c.version > best[c.pmcid].version:
            best[c.pmcid] = c
    return sorted(best.values(), key=lambda c: int(c.pmcid[3:]))


def apply_metadata(article: dict[str, Any], metadata: Mapping[str, Any]) -> None:
    """Source metadata overrides the XML: version, license (when it has one), commercial use,
    retraction, open-access flags, ids."""
    article["pmcid"] = metadata.get("pmcid") or article.get("pmcid")
    if metadata.get("version") is not None:
        article["version"] = int(metadata["version"])
    for column in ("pmid", "doi"):
        if metadata.get(column) and not article.get(column):
            article[column] = str(metadata[column])
    apply_source_license(article, metadata.get("license_code"))
    for column, field_name in (
        ("retracted", "is_retracted"),
        ("is_pmc_openaccess", "is_pmc_openaccess"),
        ("is_manuscript", "is_manuscript"),
    ):
        if metadata.get(field_name) is not None:
            article[column] = bool(metadata[field_name])


_METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "pmcid": (str,),
    "version": (int,),
    "pmid": (str, int),
    "doi": (str,),
    "license_code": (str,),
    "is_retracted": (bool,),
    "is_pmc_openaccess": (bool,),
    "is_manuscript": (bool,),
    "xml_url": (str,),
}


def check_metadata(metadata: object) -> dict[str, Any]:
    """``metadata`` (a decoded metadata JSON) when the fields the harvest reads have their JSON types,
    else ``ValueError`` naming the first field that has not: one bad file is quarantined, it does
    not crash the batch when its values are used."""
    if not isinstance(metadata, dict) or "xml_url" not in metadata:
        raise ValueError("metadata has no xml_url")
    for name, types in _METADATA_TYPES.items():
        value = metadata.get(name)
        if value is not None and (
            not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        ):
            expected = " or ".join(t.__name__ for t in types)
            raise ValueError(
                f"metadata field {name!r} is {type(value).__name__} {value!r:.60}, expected {expected}"
            )
    if metadata.get("pmcid") is not None and not re.fullmatch(r"PMC\d+", metadata["pmcid"]):
        raise ValueError(f"metadata field 'pmcid' is not a PMCID: {metadata['pmcid']!r:.60}")
    media = metadata.get("media_urls")
    if media is not None and not (isinstance(media, list) and all(isinstance(url, str) for url in media)):
        raise ValueError("metadata field 'media_urls' is not a list of strings")
    return metadata


def attach_media(figures: list[dict[str, Any]], media: Mapping[str, bytes]) -> None:
    """Fill each figure's image from the media file matching one of its graphics, as ``harvest local``."""
    attach_images(figures, {image_key(name): _media_image(name, data) for name, data in media.items()})


def _media_image(name: str, data: bytes) -> Image:
    path = PurePosixPath(name).name
    try:
        return read_image(path, data)
    except (NotAnImage, DecompressionBomb):  # kept as fetched (MD5-verified), its size unknown
        return Image(path, data, None, None, None)


class PmcHarvest:
    def __init__(self, options: PmcOptions, session: Session) -> None:
        self.options = options
        self.session = session
        self.bucket = PmcBucket(options.base_url)
        self.licenses = license_filter(options.license)
        self.selection_problems: list[dict[str, Any]] = []

    async def list_objects(self, prefix: str, delimiter: str | None = None) -> tuple[list[Any], list[str]]:
        """All keys (with ETags) and common prefixes under ``prefix``; pages cached for the run."""
        contents: list[tuple[str, str | None]] = []
        prefixes: list[str] = []
        token: str | None = None
        for page_no in range(1_000_000):
            params = {"list-type": "2", "prefix": prefix}
            if delimiter:
                params["delimiter"] = delimiter
            if token:
                params["continuation-token"] = token
            name = f"list-{sha256_hex(f'{prefix}|{delimiter}'.encode())[:16]}-{page_no}.xml"
            page = await self.session.state.cached(
                name, partial(self.session.fetcher.get, self.bucket.list_url(), params=params)
            )
            page_contents, page_prefixes, token = parse_list_page(page)
            contents += page_contents
            prefixes += page_prefixes
            if token is None:
                break
        return contents, prefixes

    async def candidates(self) -> list[Candidate]:
        """The versions to consider; a listing or inventory the bucket refuses stops the run."""
        o = self.options
        try:
            if o.ids:
                return await self.candidates_from_ids(o.ids)
            if o.since is not None:
                return await self.candidates_since(o.since)
            contents, _ = await self.list_objects("metadata/")
        except FetchError as exc:
            raise HarvestInterrupted(f"cannot list what to harvest: {exc}") from None
        return latest_versions(_metadata_candidates(contents))

    async def candidates_from_ids(self, ids: Iterable[str]) -> list[Candidate]:
        async def resolve(value: str) -> Candidate | None:
            pmcid, version = parse_pmcid(value)
            if version is not None:
                return Candidate(pmcid, version)
            try:
                contents, _ = await self.list_objects(f"metadata/{pmcid}.")
            except FetchError as exc:
                self.selection_problems.append(
                    quarantine_record(SOURCE, exc.url, exc.reason, str(exc), article_id=pmcid)
                )
                return None
            found = latest_versions(_metadata_candidates(contents))
            if not found:
                self.selection_problems.append(
                    quarantine_record(
                        SOURCE,
                        f"metadata/{pmcid}.",
                        "not_found",
                        f"{pmcid}: no version under metadata/{pmcid}. in the bucket",
                        article_id=pmcid,
                        stage="select",
                    )
                )
                return None
            return found[0]

        resolved = await gather_all(*(resolve(v) for v in ids))
        return latest_versions(c for c in resolved if c is not None)

    async def candidates_since(self, since: date) -> list[Candidate]:
        """Latest versions of the articles with a version new or changed since ``since``."""
        _, folders = await self.list_objects(INVENTORY_PREFIX, "/")
        dated = sorted(f for f in folders if INVENTORY_FOLDER.search(f))
        if not dated:
            raise HarvestInputError(f"no inventory under {self.bucket.object_url(INVENTORY_PREFIX)}")
        manifest_key = f"{dated[-1]}manifest.json"
        manifest = await self.session.fetcher.get(self.bucket.object_url(manifest_key), key=manifest_key)
        columns, files = parse_inventory_manifest(manifest)
        everything: list[Candidate] = []
        changed: set[str] = set()
        for key, md5 in files:
            data = await self.session.fetcher.get(self.bucket.object_url(key), md5=md5, key=key)
            for row in inventory_rows(data, columns):
                match = METADATA_KEY.match(row.get("Key", ""))
                if not match:
                    continue
                candidate = Candidate(match.group(1), int(match.group(2)), plain_md5_etag(row.get("ETag")))
                everything.append(candidate)
                if _modified_on_or_after(row.get("LastModifiedDate", ""), since):
                    changed.add(candidate.pmcid)
        return [c for c in latest_versions(everything) if c.pmcid in changed]

    async def fetch_metadata(self, candidate: Candidate) -> Selected | dict[str, Any]:
        """The candidate's metadata, or a quarantine record."""
        key = candidate.key
        try:
            data = await self.session.fetcher.get(
                self.bucket.object_url(key), key=key, stored_md5=candidate.etag, etag_is_md5=True
            )
            metadata = check_metadata(json.loads(data))
        except FetchError as exc:
            return quarantine_record(SOURCE, key, exc.reason, str(exc), article_id=candidate.pmcid)
        except ValueError as exc:
            return quarantine_record(SOURCE, key, "bad_metadata", f"{key}: {exc}", article_id=candidate.pmcid)
        digest = md5_hex(data)
        if candidate.etag is not None and digest != candidate.etag:
            self.session.summary.changed += 1
            log.info(
                "%s changed since it was listed (ETag %s, now %s): taken as it is now",
                key,
                candidate.etag,
                digest,
            )
        return Selected(candidate, metadata, digest)

    def keep(self, selected: Selected) -> str | None:
        """Why an article is not harvested (``not_open_access``, ``license``, ``retracted``), or None.

        Without a license code in the metadata, the ``license`` filter is left to the XML's license
        (``license_pending``), as the article row's license is.
        """
        metadata = selected.metadata
        if metadata.get("is_pmc_openaccess") is False and not (
            self.options.include_manuscripts and metadata.get("is_manuscript")
        ):
            return "not_open_access"
        if self.licenses is not None:
            code = licenses.normalize_code(metadata.get("license_code"))
            if code is None:
                selected.license_pending = True
            elif code not in self.licenses:
                return "license"
        if self.options.skip_retracted and metadata.get("is_retracted"):
            return "retracted"
        return None

    async def fetch_article(self, selected: Selected) -> dict[str, Any] | None:
        """Fetch the XML (and media) of ``selected`` into it; a quarantine record when the XML fails."""
        pmcid = selected.candidate.pmcid
        try:
            key, md5 = self.bucket.parse_s3_url(selected.metadata["xml_url"])
            selected.xml = await self.session.fetcher.get(
                self.bucket.object_url(key), md5=md5, key=key, etag_is_md5=True
            )
        except FetchError as exc:
            return quarantine_record(
                SOURCE, selected.metadata["xml_url"], exc.reason, str(exc), article_id=pmcid
            )
        except ValueError as exc:
            return quarantine_record(
                SOURCE, str(selected.metadata["xml_url"]), "bad_url", str(exc), article_id=pmcid
            )
        return None

    async def fetch_media(self, selected: Selected) -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = []

        async def one(url: str) -> None:
            try:
                key, md5 = self.bucket.parse_s3_url(url)
                selected.media[key] = await self.session.fetcher.get(
                    self.bucket.object_url(key), md5=md5, key=key, etag_is_md5=True
                )
            except FetchError as exc:
                problems.append(
                    quarantine_record(
                        SOURCE, url, exc.reason, str(exc), article_id=selected.candidate.pmcid, stage="media"
                    )
                )
            except ValueError as exc:
                problems.append(
                    quarantine_record(
                        SOURCE,
                        str(url),
                        "bad_url",
                        str(exc),
                        article_id=selected.candidate.pmcid,
                        stage="media",
                    )
                )

        await gather_all(*(one(u) for u in selected.metadata.get("media_urls") or []))
        return problems

    async def run(self) -> HarvestSummary:
        session = self.session
        candidates = await self.candidates()
        if self.selection_problems:
            shard = shard_name("pmc-select", sorted(r["member"] for r in self.selection_problems))
            session.summary.quarantined += await asyncio.to_thread(
                store.write_quarantine, session.build, shard, self.selection_problems
            )
        remaining = self.options.limit
        session.set_total(len(candidates) if remaining is None else min(remaining, len(candidates)))
        position = 0
        while position < len(candidates) and (remaining is None or remaining > 0):
            size = self.options.batch_size if remaining is None else min(self.options.batch_size, remaining)
            taken = await self.run_batch(candidates[position : position + size])
            position += size
            if remaining is not None:
                remaining -= taken
        return session.summary

    async def run_batch(self, batch: list[Candidate]) -> int:
        """Harvest one batch of candidates as one shard; returns the number of articles taken."""
        session = self.session
        results = await gather_all(*(self.fetch_metadata(c) for c in batch))
        quarantine = [r for r in results if isinstance(r, dict)]
        selected: list[Selected] = []
        for result in results:
            if isinstance(result, Selected):
                reason = self.keep(result)
                if reason is None:
                    selected.append(result)
                else:
                    session.summary.skipped[reason] += 1
                    session.advance()
        keys = [f"{s.candidate.pmcid}.{s.candidate.version}:{s.metadata_md5}" for s in selected]
        keys += [f"failed:{r['member']}" for r in quarantine]
        if not keys:
            return 0
        shard = shard_name(SOURCE + ("-media" if self.options.media else ""), keys)
        if session.is_done(shard):
            session.skip_shard(len(selected))
            return len(selected)

        async def fetch_one(s: Selected) -> list[dict[str, Any]]:
            problem = await self.fetch_article(s)
            problems = [problem] if problem else (await self.fetch_media(s) if self.options.media else [])
            session.advance()
            return problems

        for problems in await gather_all(*(fetch_one(s) for s in selected)):
            quarantine += problems
        skipped = session.summary.skipped
        await session.writer.submit(shard, lambda: _extract(selected, quarantine, self.licenses, skipped))
        return len(selected)


def _metadata_candidates(contents: Iterable[tuple[str, str | None]]) -> Iterable[Candidate]:
    for key, etag in contents:
        match = METADATA_KEY.match(key)
        if match:
            yield Candidate(match.group(1), int(match.group(2)), etag)


def _modified_on_or_after(value: str, since: date) -> bool:
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return True  # an unreadable date: harvest rather than silently miss a change
    return when.astimezone(UTC).date() >= since


def _extract(
    selected: list[Selected],
    quarantine: list[dict[str, Any]],
    wanted: frozenset[str] | None,
    skipped: Counter[str],
) -> tuple[list[ParsedArticle], list[dict[str, Any]]]:
    """Parse the batch's XML; an article whose license was left to its XML and is not ``wanted``
    is counted in ``skipped`` instead of kept."""
    parsed_all: list[ParsedArticle] = []
    problems = list(quarantine)
    for s in selected:
        if s.xml is None:
            continue
        key, _ = PmcBucket.parse_s3_url(s.metadata["xml_url"])
        parsed, failed = parse_document(
            s.xml, source=SOURCE, source_uri=f"s3://{BUCKET}/{key}", article_id=s.candidate.pmcid
        )
        problems += failed
        for article in parsed[:1]:  # sub-articles are not separate articles of the bucket
            apply_metadata(article.article, s.metadata)
            if s.license_pending and wanted is not None and article.article.get("license") not in wanted:
                skipped["license"] += 1
                continue
            if s.media:
                attach_media(article.figures, s.media)
            parsed_all.append(article)
    return parsed_all, problems


async def harvest_async(options: PmcOptions) -> HarvestSummary:
    modes = sum([bool(options.ids), options.since is not None, options.all])
    if modes != 1:
        raise HarvestInputError("choose exactly one of --ids FILE, --since DATE or --all")
    if options.limit is not None and options.limit < 1:
        raise HarvestInputError("--limit must be ≥ 1")
    license_filter(options.license)  # reject a bad --license before any request
    ids = [f"{p}.{v}" if v else p for p, v in (parse_pmcid(i) for i in options.ids)]
    selection = {
        "base_url": options.base_url,
        "ids": ids,
        "since": options.since,
        "all": options.all,
    }
    async with Session(options.out, SOURCE, options.fetch, selection) as session:
        return await PmcHarvest(options, session).run()


def harvest(options: PmcOptions) -> HarvestSummary:
    """Harvest from the PMC Cloud Service into ``options.out``; see the module docstring."""
    return asyncio.run(harvest_async(options))


@register
class PmcSource:
    """The ``pmc`` source in the registry: its ``harvest`` (the options come from ``harvest.steps``)."""

    kind: ClassVar[str] = SOURCE
    harvest = staticmethod(harvest)
