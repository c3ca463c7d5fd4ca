"""Catalogue of the public data sources ``mpc-dc data fetch`` can download.

Each :class:`Source` names a URL template on the publisher's own public host,
the parameters that fill it (validated before anything touches the network),
the cache file name, the reader that reads the file (``None`` where the project
has no reader for that raw layout yet), the licence, and whether the publisher
states a checksum. None of the sources below publishes a
checksum today (NYISO MIS, EIA and CAISO OASIS serve bare files; the BurstGPT
v1.1 release assets predate GitHub's asset digests), so
:data:`Source.published_sha256` is empty for all of them. For the files whose
content is known (the EIA wholesale files of past years that the project's real
data holds, verified copies listed with their SHA-256 in ``shared/data/SHA256SUMS``)
:data:`Source.pinned_sha256` pins the digest, and a download that differs is
refused. For the others :func:`traces.fetch.fetch` records the SHA-256 it computes
after download in the cache manifest; later runs verify the file against that
record.

Parameters are checked before anything touches the network: by pattern, and
dates also by the calendar (``20220231`` is refused, not sent).

URL patterns were checked against public code that downloads these files
(download scripts and ISO client libraries), not by fetching them here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from difflib import get_close_matches
from zoneinfo import ZoneInfo

from traces.errors import ConfigError

#: Sources without a reader yet: the file is downloaded and recorded, but
#: ``mpc-dc data check`` and ``traces.formats.read_any`` do not read it.
NO_READER = None


@dataclass(frozen=True)
class Param:
    """One parameter of a URL template.

    Parameters
    ----------
    name
        Placeholder name in the templates, e.g. ``"year"``.
    help
        One-line description shown by ``mpc-dc data list``.
    pattern
        Regular expression the whole value must match.
    example
        A valid value, shown in error messages.
    default
        Value used when the caller gives none; ``None`` makes it required.
    date_format
        ``strptime`` format the value must also parse with (a real calendar date),
        e.g. ``"%Y%m%d"``; empty for none.
    """

    name: str
    help: str
    pattern: str
    example: str
    default: str | None = None
    date_format: str = ""


@dataclass(frozen=True)
class ResolvedSource:
    """A source with its parameters filled in: what to download and where to put it."""

    source: str
    url: str
    filename: str
    params: Mapping[str, str]
    published_sha256: str | None
    pinned_sha256: str | None = None


@dataclass(frozen=True)
class Source:
    """A public data source and how to download one file of it.

    Parameters
    ----------
    name
        Catalogue key used on the command line.
    title
        Human-readable description.
    url_template
        ``str.format`` template of the download URL (public host only).
    filename_template
        Template of the file name inside ``<cache>/<name>/``; may contain ``/``.
    params
        The template parameters.
    reader
        Dotted name of the function that reads the downloaded file, or ``None`` when
        the project has no reader for it yet (raw download only).
    format
        Key of :data:`traces.formats.READERS` that ``read_any`` dispatches to, or
        ``None`` without a reader.
    license
        Licence / terms note.
    homepage
        Where a person can read about the data.
    checksum_note
        Whether and where the publisher states checksums.
    published_sha256
        Published SHA-256 digests by resolved file name (empty when none are published).
    pinned_sha256
        SHA-256 digests of known files by resolved file name, pinned by the project
        from verified copies (see the module docstring); a download must match.
    derive
        Optional function adding derived template values (e.g. UTC query bounds) to the
        validated parameters.
    notes
        Anything a user should know before fetching (size, limits, time zone).
    """

    name: str
    title: str
    url_template: str
    filename_template: str
    params: tuple[Param, ...]
    reader: str | None
    format: str | None
    license: str
    homepage: str
    checksum_note: str
    published_sha256: Mapping[str, str] = field(default_factory=dict)
    pinned_sha256: Mapping[str, str] = field(default_factory=dict)
    derive: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None
    notes: str = ""

    def resolve(self, values: Mapping[str, str]) -> ResolvedSource:
        """Validate ``values`` and fill in the templates.

        Parameters
        ----------
        values
            Parameter values by name (strings, as given on the command line).

        Returns
        -------
        ResolvedSource
            URL, cache file name and published checksum (if any).

        Raises
        ------
        ConfigError
            Unknown parameter (with the nearest valid name), missing required
            parameter, or a value that does not match the parameter's pattern.
        """
        known = {p.name: p for p in self.params}
        where = f"source '{self.name}'"
        for key in values:
            if key not in known:
                near = get_close_matches(key, list(known), n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                valid = ", ".join(known) or "none"
                raise ConfigError(where, f"unknown parameter (valid: {valid}){hint}", key=key)
        filled: dict[str, str] = {}
        for p in self.params:
            value = values.get(p.name, p.default)
            if value is None:
                raise ConfigError(
                    where, f"missing required parameter, e.g. {p.name}={p.example}", key=p.name
                )
            if not re.fullmatch(p.pattern, value):
                raise ConfigError(
                    where,
                    f"got {value!r}; expected a value matching {p.pattern} (e.g. {p.example})",
                    key=p.name,
                )
            if p.date_format:
                try:
                    datetime.strptime(value, p.date_format)
                except ValueError:
                    raise ConfigError(
                        where, f"got {value!r}, which is not a calendar date; expected a real "
                        f"date like {p.example}", key=p.name) from None
            filled[p.name] = value
        template_values = dict(filled)
        if self.derive is not None:
            template_values.update(self.derive(filled))
        filename = self.filename_template.format(**template_values)
        return ResolvedSource(
            source=self.name,
            url=self.url_template.format(**template_values),
            filename=filename,
            params=filled,
            published_sha256=self.published_sha256.get(filename),
            pinned_sha256=self.pinned_sha256.get(filename),
        )


def _oasis_bounds(values: Mapping[str, str]) -> Mapping[str, str]:
    """OASIS query bounds: local (Pacific prevailing) midnights as GMT ``YYYYMMDDTHH:MM-0000``.

    ``start`` is the first trade date, ``end`` the last one (inclusive); OASIS
    wants the GMT instant of local midnight, which is 08:00 in PST and 07:00 in
    PDT, so it is computed rather than hard-coded.
    """
    pacific = ZoneInfo("America/Los_Angeles")

    def utc_of_local_midnight(day: datetime) -> str:
        local = day.replace(tzinfo=pacific)
        return local.astimezone(UTC).strftime("%Y%m%dT%H:%M-0000")

    start = datetime.strptime(values["start"], "%Y%m%d")
    end = datetime.strptime(values["end"], "%Y%m%d")
    if end < start:
        raise ConfigError(
            "OASIS query",
            f"end {values['end']} is before start {values['start']}",
            key="end",
        )
    if (end - start).days >= 31:
        raise ConfigError(
            "OASIS query",
            "OASIS serves at most 31 days per query; split the range",
            key="end",
        )
    return {
        "startdatetime": utc_of_local_midnight(start),
        "enddatetime": utc_of_local_midnight(end + timedelta(days=1)),
    }


_YEAR = Param("year", "calendar year", r"(19|20)\d\d", "2022")
_DATE_PAT = r"(19|20)\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])"
_NO_CHECKSUM = "not published by the source; SHA-256 recorded in the cache manifest on download"
_PINNED = (
    "not published by the source; pinned by the project for the files listed below "
    "(verified copies), recorded in the cache manifest for the others"
)
_NYISO_RT_PINNED = {
    "nyiso_lmp_rt_hr_zones_2021.csv":
        "11306a686aec991e854210e7340fad62c5014f1752406bc14b40e5ca3103bf5d",
    "nyiso_lmp_rt_hr_zones_2022.csv":
        "45552b7a11ff68ff2026fc0c76a7faa8690ffcdf5f3f9021c7d6a12f9d64e1e0",
}
"""SHA-256 of the EIA NYISO hourly files, as in shared/data/nyiso_lbmp (SHA256SUMS)."""
_CAISO_RT_PINNED = {
    "caiso_lmp_rt_15min_zones_2021Q1.csv":
        "fe2e241b8a84f4edb7b818fab6cc4b75b38ac280deec543bfd8f1f579efcf46e",
    "caiso_lmp_rt_15min_zones_2021Q2.csv":
        "01edce283523ac7cd0ca399785971db51ae82e4bee5a561cf380196dc45a085b",
    "caiso_lmp_rt_15min_zones_2021Q3.csv":
        "50455fa4376972f71ae1ec370e37d26685fd28781ff76c44d21da0ab7a28d914",
    "caiso_lmp_rt_15min_zones_2021Q4.csv":
        "4dfd5c8ecf25fa1d013f759bddb9ff9748f108b7c2643c9ee8797236470cb8b9",
}
"""SHA-256 of the EIA CAISO 15-minute files, as in shared/data/caiso_lmp (SHA256SUMS)."""
_EIA_TERMS = (
    "U.S. EIA data: public domain U.S. government work (cite EIA); the ISO's own "
    "terms of use apply to the underlying market data"
)
_EIA_WHOLESALE = "https://www.eia.gov/electricity/wholesalemarkets/csv/"
_EIA930 = "https://www.eia.gov/electricity/gridmonitor/sixMonthFiles/"
_OASIS = "https://oasis.caiso.com/oasisapi/SingleZip?resultformat=6"
_NYISO_TERMS = "NYISO public market data (mis.nyiso.com); NYISO website terms of use apply"
_CAISO_TERMS = "CAISO OASIS public market data; CAISO website terms of use apply"
_NODE = Param(
    "node",
    "OASIS pricing node, e.g. a trading hub",
    r"[A-Z0-9_\-]+",
    "TH_NP15_GEN-APND",
    default="TH_NP15_GEN-APND",
)
_OASIS_DATES = (
    Param("start", "first trade date (Pacific), YYYYMMDD", _DATE_PAT, "20210101",
          date_format="%Y%m%d"),
    Param(
        "end",
        "last trade date (Pacific, inclusive, <= start+30 d), YYYYMMDD",
        _DATE_PAT,
        "20210107",
        date_format="%Y%m%d",
    ),
)

SOURCES: tuple[Source, ...] = (
    Source(
        name="burstgpt",
        title="BurstGPT LLM request trace (Azure OpenAI GPT service), raw request rows",
        url_template="https://github.com/HPMLL/BurstGPT/releases/download/{release}/{file}",
        filename_template="{release}/{file}",
        params=(
            Param("release", "GitHub release tag", r"v\d+(\.\d+)*", "v1.1", default="v1.1"),
            Param(
                "file",
                "release asset: BurstGPT_N.csv or BurstGPT_without_fails_N.csv",
                r"BurstGPT_(without_fails_)?\d+\.csv",
                "BurstGPT_1.csv",
                default="BurstGPT_1.csv",
            ),
        ),
        reader="traces.burstgpt.read_burstgpt_requests",
        format="burstgpt_requests",
        license="CC-BY-4.0 (HPMLL/BurstGPT); cite Wang et al., KDD 2025",
        homepage="https://github.com/HPMLL/BurstGPT",
        checksum_note=_NO_CHECKSUM,
        notes="v1.1 BurstGPT_1.csv: ~1.43 M rows, first 2 months; _2: next 2 months (~3.86 M).",
    ),
    Source(
        name="nyiso_rt_zone_month",
        title="NYISO real-time zonal LBMP (P-24A), 5-min, one month of daily CSVs in a zip",
        url_template="https://mis.nyiso.com/public/csv/realtime/{month}01realtime_zone_csv.zip",
        filename_template="{month}01realtime_zone_csv.zip",
        params=(Param("month", "month, YYYYMM", r"(19|20)\d\d(0[1-9]|1[0-2])", "202204"),),
        reader=NO_READER,
        format=NO_READER,
        license=_NYISO_TERMS,
        homepage="https://mis.nyiso.com/public/P-24Alist.htm",
        checksum_note=_NO_CHECKSUM,
        notes="Time Stamp is Eastern prevailing time, interval ending; the current month "
        "changes daily, so its manifest digest goes stale.",
    ),
    Source(
        name="nyiso_rt_zone_day",
        title="NYISO real-time zonal LBMP (P-24A), 5-min, one day",
        url_template="https://mis.nyiso.com/public/csv/realtime/{date}realtime_zone.csv",
        filename_template="{date}realtime_zone.csv",
        params=(Param("date", "day, YYYYMMDD", _DATE_PAT, "20220401", date_format="%Y%m%d"),),
        reader=NO_READER,
        format=NO_READER,
        license=_NYISO_TERMS,
        homepage="https://mis.nyiso.com/public/P-24Alist.htm",
        checksum_note=_NO_CHECKSUM,
        notes="Only recent days are served as bare CSVs; older days are in the monthly zip.",
    ),
    Source(
        name="eia_nyiso_lmp_rt",
        title="EIA wholesale market file: NYISO hourly real-time LBMP for zones",
        url_template=_EIA_WHOLESALE + "nyiso_lmp_rt_hr_zones_{year}.csv",
        filename_template="nyiso_lmp_rt_hr_zones_{year}.csv",
        params=(_YEAR,),
        reader="traces.eia.read_eia_lmp",
        format="eia_lmp",
        license=_EIA_TERMS,
        homepage="https://www.eia.gov/electricity/wholesalemarkets/data.php?rto=nyiso",
        checksum_note=_PINNED + ": years 2021, 2022",
        pinned_sha256=_NYISO_RT_PINNED,
        notes="3 title lines then the header; UTC interval ending + Eastern local columns.",
    ),
    Source(
        name="eia_caiso_lmp_rt_15min",
        title="EIA wholesale market file: CAISO 15-minute real-time LMP for zones (quarterly)",
        url_template=_EIA_WHOLESALE + "caiso_lmp_rt_15min_zones_{year}Q{quarter}.csv",
        filename_template="caiso_lmp_rt_15min_zones_{year}Q{quarter}.csv",
        params=(_YEAR, Param("quarter", "quarter 1-4", r"[1-4]", "1")),
        reader="traces.eia.read_eia_lmp",
        format="eia_lmp",
        license=_EIA_TERMS,
        homepage="https://www.eia.gov/electricity/wholesalemarkets/data.php?rto=caiso",
        checksum_note=_PINNED + ": 2021 quarters 1-4",
        pinned_sha256=_CAISO_RT_PINNED,
        notes="3 title lines then the header; NP-15, SP-15, ZP-26 with components.",
    ),
    Source(
        name="eia930_balance",
        title="EIA-930 hourly balance (demand, net generation by fuel, interchange), all BAs",
        url_template=_EIA930 + "EIA930_BALANCE_{year}_{half}.csv",
        filename_template="EIA930_BALANCE_{year}_{half}.csv",
        params=(_YEAR, Param("half", "Jan_Jun or Jul_Dec", r"Jan_Jun|Jul_Dec", "Jan_Jun")),
        reader=NO_READER,
        format=NO_READER,
        license="U.S. EIA data, public domain U.S. government work (cite EIA-930)",
        homepage="https://www.eia.gov/electricity/gridmonitor/",
        checksum_note=_NO_CHECKSUM,
        notes="~100 MB per half-year, all BAs (NYIS, CISO, ...); no reader yet for the raw "
        "file (the project reads the derived per-BA fuel-mix layout, format eia930_fuel_mix).",
    ),
    Source(
        name="eia930_interchange",
        title="EIA-930 hourly interchange between directly connected BAs",
        url_template=_EIA930 + "EIA930_INTERCHANGE_{year}_{half}.csv",
        filename_template="EIA930_INTERCHANGE_{year}_{half}.csv",
        params=(_YEAR, Param("half", "Jan_Jun or Jul_Dec", r"Jan_Jun|Jul_Dec", "Jan_Jun")),
        reader=NO_READER,
        format=NO_READER,
        license="U.S. EIA data, public domain U.S. government work (cite EIA-930)",
        homepage="https://www.eia.gov/electricity/gridmonitor/",
        checksum_note=_NO_CHECKSUM,
        notes="~100 MB per half-year.",
    ),
    Source(
        name="caiso_oasis_rtpd_lmp",
        title="CAISO OASIS PRC_RTPD_LMP: 15-min real-time (FMM) LMP at one node, CSV in zip",
        url_template=_OASIS + "&queryname=PRC_RTPD_LMP&version=3&startdatetime={startdatetime}"
        "&enddatetime={enddatetime}&market_run_id=RTPD&node={node}",
        filename_template="PRC_RTPD_LMP_{node}_{start}_{end}.zip",
        params=(*_OASIS_DATES, _NODE),
        reader=NO_READER,
        format=NO_READER,
        license=_CAISO_TERMS,
        homepage="http://oasis.caiso.com/",
        checksum_note=_NO_CHECKSUM,
        derive=_oasis_bounds,
        notes="At most 31 days per query; OASIS rate-limits (wait ~5 s between queries); "
        "an error comes back as a zip holding an XML message.",
    ),
    Source(
        name="caiso_oasis_intvl_lmp",
        title="CAISO OASIS PRC_INTVL_LMP: 5-min real-time (RTD) LMP at one node, CSV in zip",
        url_template=_OASIS + "&queryname=PRC_INTVL_LMP&version=3&startdatetime={startdatetime}"
        "&enddatetime={enddatetime}&market_run_id=RTM&node={node}",
        filename_template="PRC_INTVL_LMP_{node}_{start}_{end}.zip",
        params=(*_OASIS_DATES, _NODE),
        reader=NO_READER,
        format=NO_READER,
        license=_CAISO_TERMS,
        homepage="http://oasis.caiso.com/",
        checksum_note=_NO_CHECKSUM,
        derive=_oasis_bounds,
        notes="At most 31 days per query; OASIS rate-limits (wait ~5 s between queries).",
    ),
)

_BY_NAME: dict[str, Source] = {s.name: s for s in SOURCES}


def get_source(name: str) -> Source:
    """Return the catalogued source ``name``.

    Raises
    ------
    ConfigError
        Unknown name; the message names the nearest catalogued source.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        near = get_close_matches(name, list(_BY_NAME), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise ConfigError(
            "data sources",
            f"unknown source {name!r} (see `mpc-dc data list`){hint}",
        ) from None
