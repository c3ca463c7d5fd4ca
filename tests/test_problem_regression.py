"""The one problem against the figures of the two problems it replaced (stored regressions).

Until the old problems were deleted (issue 14, phase 2C), these cases solved every
instance with the old builder (``RcdcProblem`` of ``mpc_dc/problem.py``,
``FleetProblem`` of ``mpc_dc/fleet_problem.py``) and with the one problem side by side
(``tests/test_problem2_equivalence.py`` at commit ba3d8e3): the same optimum and the
same committed decisions. The figures below are the old problems' results on the same
instances, measured at commit ba3d8e3 with its own code (``RcdcProblem`` /
``FleetProblem`` / the old ``fleet_controller.solve_day`` on the old configuration
classes); the instances are now written in the one site model directly, field by field
as the side-by-side tests translated them.

* RCDC: random 2-4-interval instances of the property tests (wholesale and retail,
  negative prices, export above import price, staggered release, a billed peak; drawn
  from a seeded generator instead of hypothesis) in the relaxed, exact and automatic
  formulations, with binaries on the committed interval only, and with a battery; the
  default 100 MW site on 96-interval receding windows.
* Fleet: two campuses and two models, S1-S6 in the LP and committed-integer forms, the
  full MILP and the committed MIP, a DR day with a baseline, multi-resolution receding
  windows, the whole-day plans with candidates of fewer levers, and the DR study's week
  on the real data.

Objectives agree to 10⁻⁹ relative where the old and new runs take the same solver path
(LPs, committed-integer round-and-fix) and to the MIP gap where HiGHS's branch-and-bound
decides (the side-by-side tests asked 10⁻⁶, 10⁻⁴ for the committed MIP).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from mpc_dc.benchmarking import rcdc_receding_cases, rcdc_site
from mpc_dc.problem import (
    Formulation,
    HorizonInputs,
    Plan,
    PlantState,
    Problem,
    SolveResult,
    SolverOptions,
    earliest_completion_wu,
    max_work_per_interval_wu,
    solve_day,
)
from mpc_dc.site.config import (
    CA_2026_AUCTION_RESERVE_USD_PER_T,
    SCENARIOS,
    Battery,
    Campus,
    Fleet,
    Grid,
    Site,
)
from tests.test_problem_properties import (
    CAP_MW,
    DT_H,
    F3,
    NAMEPLATE_MW,
    PUE,
    Case,
    backlog_room_wu,
    inputs_of,
    new_problem,
    released_state,
)

NAN = math.nan
RTOL = 1e-9
#: Relative tolerance of objectives HiGHS's branch-and-bound decides (gap 10⁻⁷).
MIP_RTOL = 1e-6


def same(stored: float, new: float, rel: float = RTOL, scale: float = 1.0) -> None:
    """``new`` equals the stored figure to ``rel`` (plus ``rel × scale`` near zero) [$]."""
    assert new == pytest.approx(stored, rel=rel, abs=rel * scale), (stored, new)


# ----------------------------------------------------------------------------- figures

#: (relaxed, exact, auto, auto's formulation, battery exact, battery relaxed) [$]
RCDC_UNDER_CONDITIONS = (
    (2676.507222423108, 2676.507222423108, 2676.507222423108, "relaxed", 1698.4568677975537,
     1698.4568677975533),
    (794.3255621828171, 794.3255621828171, 794.3255621828171, "relaxed", -14.597835574654674,
     -14.597835574654669),
    (-76.68217720962848, -76.68217720962848, -76.68217720962848, "relaxed", -104.82610826410108,
     -104.82610826410111),
    (40.01467085436766, 40.01467085436766, 40.01467085436766, "relaxed", 0.0831777974177823,
     0.08317779741778675),
    (69.94208914624106, 69.94208914624106, 69.94208914624106, "relaxed", 44.291884139201905,
     44.291884139201905),
    (138.6338516407254, 138.6338516407254, 138.6338516407254, "relaxed", 97.79645658409633,
     97.79645658409632),
    (22.32313447130594, 22.323134471305934, 22.32313447130594, "relaxed", 13.776515028740882,
     13.776515028740889),
    (2191.5691516036854, 2191.5691516036845, 2191.5691516036854, "relaxed", 652.8413699053016,
     652.8413699053026),
    (26.751933480724, 26.751933480724, 26.751933480724, "relaxed", 26.751933480724013,
     26.751933480724),
    (129.32660872954486, 129.32660872954486, 129.32660872954486, "relaxed", 85.03535708130785,
     85.03535708130781),
    (29.186997841311594, 29.186997841311594, 29.186997841311594, "relaxed", 8.730259531081131,
     8.730259531081137),
    (-111.31034789107727, -111.31034789107727, -111.31034789107727, "relaxed", -111.31034789107727,
     -111.31034789107727),
    (45.90283154426133, 45.902831544261744, 45.90283154426133, "relaxed", 39.70558007122577,
     39.70558007122581),
    (-16.425428432720523, -16.425428432720544, -16.425428432720523, "relaxed", -52.679907591987096,
     -52.67990759198708),
    (-4.7012486971586895, -4.701248697158739, -4.7012486971586895, "relaxed", -12.785530866524041,
     -12.785530866523985),
    (81.45758813003985, 81.45758813003985, 81.45758813003985, "relaxed", 71.98024851196318,
     71.98024851196318),
)

#: (exact, auto, auto's formulation, binaries on interval 0 only, battery exact,
#: battery relaxed or None) [$]
RCDC_ANY_PRICES = (
    (76.18789294018129, 76.18789294018129, "exact", 76.18789294018134, 76.18789294018129, None),
    (0.4850907376659826, 0.4850907376659826, "exact", -2.140716320203243, -7.295194529052391,
     None),
    (3474.9278453392794, 3474.9278453392794, "exact", 3473.6671526928326, 2756.2041120279737,
     None),
    (1.8948212861086904, 1.8948212861086904, "exact", -11.558611688534981, -1.8487228592647398,
     None),
    (-22.35607449986431, -22.35607449986431, "exact", -59.46187270128381, -33.63501986009501,
     None),
    (-153.84579945205118, -153.84579945205118, "exact", -157.0568418308245, -208.63556028882715,
     None),
    (-149.46213253043726, -149.46213253043726, "exact", -149.46213253043726, -149.46213253043726,
     None),
    (-23.250395419572506, -23.250395419572506, "exact", -36.90515157463675, -23.59406992154128,
     None),
    (79.70364713117725, 79.70364713117726, "relaxed", 79.70364713117725, 38.20139034669204,
     38.20139034669203),
    (-54.50724297362213, -54.50724297362213, "exact", -224.7199387326335, -81.99120668771485,
     None),
    (-30.905351774571905, -30.905351774571905, "exact", -30.905351774571884, -124.40270977729362,
     None),
    (45.62508285361261, 45.62508285361266, "relaxed", 45.625082853612625, 12.6318598037181,
     12.631859803718136),
    (20.08353295566349, 20.083532955663497, "relaxed", 20.08353295566349, 20.08353295566349,
     20.083532955663497),
    (-163.37969119325555, -163.37969119325555, "exact", -163.3796911932555, -195.69122080145056,
     None),
    (63.21105977374679, 63.21105977374679, "exact", 63.21105977374679, -7.734152955685857, None),
    (70.01046859147658, 70.01046859147658, "exact", 68.75670796816519, 61.21296277788697, None),
)

#: per market and window: objective [$]; interval 0's deferrable work [WU], curtailment,
#: import, export, battery charge and discharge [MW]
RCDC_RECEDING = {
    "wholesale": (
        (-66514.91001187277, 6.0685084207398425, 0.0, 0.0, 12.959414309235065, 0.0, 0.0),
        (-67420.58359413194, 6.047762883454405, 0.0, 0.0, 19.229587167240993, 0.0, 0.0),
        (-68233.17631927268, 0.0, 0.0, 0.0, 42.217887223005235, 0.0, 0.0),
        (-68903.42597006059, 0.0, 1.4210854715202004e-14, 0.0, 43.11610213758259, 0.0, 0.0),
        (-69595.1575715076, 6.007699624763571, 0.0, 0.0, 23.557932728592426, 0.0, 0.0),
        (-70275.88386514294, 0.0, 0.0, 0.0, 45.85345242386583, 0.0, 0.0),
        (-70796.87469611596, 0.0, 1.4210854715202004e-14, 0.0, 44.720477682209044, 0.0, 0.0),
        (-71474.02733473932, 0.0, 0.0, 0.0, 50.063997741110356, 0.0, 0.0),
        (-72068.99556691952, 0.0, 0.0, 0.0, 50.55338854651407, 0.0, 0.0),
        (-72695.41889816514, 0.0, 1.4210854715202004e-14, 0.0, 46.37963716615354, 0.0, 0.0),
        (-73418.20612555355, 0.0, 1.4210854715202004e-14, 0.0, 48.28470587605403, 0.0, 0.0),
        (-73951.50232685395, 0.0, 0.0, 0.0, 40.51841228376722, 0.0, 0.0),
    ),
    "retail": (
        (-66514.2977813248, 6.0685084207398425, 0.0, 0.0, 12.959414309235065, 0.0, 0.0),
        (-67419.98793387008, 6.047762883454405, 0.0, 0.0, 19.229587167240986, 0.0, 0.0),
        (-68232.58065901084, 0.0, 0.0, 0.0, 42.217887223005235, 0.0, 0.0),
        (-68903.2638294362, 0.0, 1.4210854715202004e-14, 0.0, 43.11610213758259, 0.0, 0.0),
        (-69595.15757150762, 6.007699624763571, 0.0, 0.0, 23.557932728592426, 0.0, 0.0),
        (-70275.88386514291, 0.0, 0.0, 0.0, 45.85345242386583, 0.0, 0.0),
        (-70796.87469611599, 0.0, 1.4210854715202004e-14, 0.0, 44.720477682209044, 0.0, 0.0),
        (-71474.02733473932, 0.0, 0.0, 0.0, 50.063997741110356, 0.0, 0.0),
        (-72068.99556691953, 0.0, 0.0, 0.0, 50.55338854651407, 0.0, 0.0),
        (-72695.41889816514, 0.0, 1.4210854715202004e-14, 0.0, 46.37963716615353, 0.0, 0.0),
        (-73418.20612555354, 0.0, 1.4210854715202004e-14, 0.0, 48.28470587605403, 0.0, 0.0),
        (-73951.50232685395, 0.0, 0.0, 0.0, 40.51841228376722, 0.0, 0.0),
    ),
}

#: (scenario, form): objective, LP bound, energy + carbon [$]; committed-integer:
#: interval 0's instances and routing shares [-] per pool (site order)
FLEET_SCENARIOS = {
    ("S1", "lp"): (5.803245813990448, 5.803245813990447, 3.432851831283992, None, None),
    ("S1", "committed_integer"): (6.064091686789545, 5.803245813990448, 3.5640916867895447,
     (8, 14, 6, 10),
     (0.5714285714285714, 0.5714285714285714, 0.4285714285714286, 0.42857142857142855)),
    ("S2", "lp"): (5.145724967744929, 5.145724967744929, 2.766655867553926, None, None),
    ("S2", "committed_integer"): (5.227967596292206, 5.145724967744929, 2.777189055507454,
     (2, 14, 2, 10),
     (0.5714285714285714, 0.5714285714285714, 0.4285714285714286, 0.42857142857142855)),
    ("S3", "lp"): (5.402340692700557, 5.402340692700556, 3.031946709994101, None, None),
    ("S3", "committed_integer"): (5.581172035490749, 5.402340692700557, 3.1311720354907484,
     (4, 5, 9, 19), (0.0, 0.1879174459788289, 1.0, 0.8120825540211711)),
    ("S4", "lp"): (4.743934162022859, 4.743934162022858, 2.364865061831855, None, None),
    ("S4", "committed_integer"): (4.819091382716987, 4.743934162022859, 2.3683128419322346,
     (2, 2, 2, 22),
     (0.3531371757852156, 0.06068476862564294, 0.6468628242147845, 0.939315231374357)),
    ("S5", "lp"): (372251.7391739617, 372251.7391739616, 0.7631127987231868, None, None),
    ("S5", "committed_integer"): (
        372251.7391739617,
        372251.7391739617,
        0.7631127987231868,
        (2, 0, 0, 0, 2, 0, 0, 2, 0, 0, 0, 2, 0, 0),
        (0.5714285714285714, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.4285714285714286, 0.0, 0.0, 0.0, 0.5,
         0.0, 0.0),
    ),
    ("S6", "lp"): (4.510200741570619, 4.510200741570619, 2.2612192841664926, None, None),
    ("S6", "committed_integer"): (
        4.54009594044604,
        4.510200741570619,
        2.267573836163308,
        (2, 0, 0, 0, 2, 0, 0, 2, 0, 0, 0, 7, 13, 0),
        (0.3531371757852156, 0.0, 0.0, 0.0, 0.08120447522328145, 0.0, 0.0, 0.6468628242147845, 0.0,
         0.0, 0.0, 0.3031518446084267, 0.6156436801682919, 0.0),
    ),
}

#: scenario: full-MILP objective, energy + carbon, DR reward, committed-MIP objective [$]
FLEET_FULL_MILP = {
    "S1": (-11.118470634542446, 0.8565489354882132, 14.52501957003066, -11.118470634542446),
    "S4": (-12.3658154677718, 0.5613333022588586, 15.47714877003066, -12.44840157348525),
    "S6": (-12.906773939355341, 0.51988073243005, 15.864694366605804, -12.952056325316498),
}

#: form: objective, LP bound, energy + carbon, DR reward [$], DR reduction (C, H) [MW]
FLEET_DR_DAY = {
    "lp": (
        -62.270434367735064,
        -62.27043436773508,
        2.531659595127704,
        69.6247727330433,
        (
            (0.0, 0.0, 0.0, 0.0, 0.028245531586747807, 0.052091788157103615, 0.01736026252387613,
             0.04999878707656379, 0.0, 0.0, 0.0, 0.0),
            (0.0, 0.0, 0.0, 0.0, 0.04749431285150859, 0.02285308724042769, 0.026455468036023867,
             0.03399985345992176, 0.0, 0.0, 0.0, 0.0),
        ),
    ),
    "committed_integer": (
        -62.240672475117115,
        -62.270434367735064,
        2.560740154002458,
        69.61980381319309,
        (
            (0.0, 0.0, 0.0, 0.0, 0.028422299143725162, 0.05226855571408097, 0.017537030080853486,
             0.05070189450023296, 0.0, 0.0, 0.0, 0.0),
            (0.0, 0.0, 0.0, 0.0, 0.04728999184255294, 0.02268399745602776, 0.026278700479046513,
             0.033296746036252586, 0.0, 0.0, 0.0, 0.0),
        ),
    ),
}

#: (fine, far): model columns; per step: objective, LP bound [$], warm start, committed
#: instances. The warm start of a receding step is measured (``StartRecord``): on the
#: (2, 6) tail the first step's probe found the unshifted basis 46 iterations cheaper,
#: so steps 2-5 start from it (the optima and committed instances are those of the
#: shifted starts before, to the last digit).
FLEET_MULTIRES = {
    (3, None): (
        8,
        (
            (-76.57635534439578, -76.66778750934763, "cold",
             (4, 1, 0, 0, 8, 5, 0, 0, 1, 0, 0, 0, 8, 0)),
            (-78.61078768974134, -78.6548627804006, "shift",
             (5, 4, 0, 0, 6, 5, 0, 0, 1, 0, 0, 0, 3, 0)),
            (-76.36395271172495, -76.41305347351968, "shift",
             (5, 4, 0, 0, 7, 5, 0, 0, 1, 0, 0, 0, 3, 0)),
            (-78.94992246820517, -78.9813582457461, "shift",
             (5, 4, 0, 0, 7, 4, 0, 0, 1, 0, 0, 0, 3, 0)),
            (-75.9549984178048, -76.14711239073313, "shift",
             (5, 4, 0, 0, 7, 4, 1, 1, 1, 0, 0, 1, 3, 0)),
            (-78.54420959287813, -78.56340130101384, "shift",
             (5, 4, 0, 0, 3, 2, 0, 1, 1, 0, 0, 1, 1, 0)),
            (-74.82209113834521, -74.98283831173205, "shift",
             (3, 4, 0, 0, 2, 2, 0, 1, 1, 0, 1, 1, 1, 0)),
        ),
    ),
    (2, 6): (
        6,
        (
            (-77.48667815328527, -77.69460498454643, "cold",
             (3, 2, 0, 0, 5, 9, 0, 1, 0, 0, 0, 3, 5, 0)),
            (-76.14953907285809, -76.19835328240492, "shift",
             (4, 5, 0, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0)),
            (-79.85020411422036, -79.92429937265258, "same",
             (4, 5, 0, 0, 6, 8, 0, 1, 0, 0, 0, 0, 0, 0)),
            (-77.41587179310879, -77.41587179310879, "same",
             (4, 5, 0, 0, 6, 8, 0, 1, 0, 0, 0, 0, 0, 0)),
            (-79.17448357580453, -79.2638727086703, "same",
             (4, 5, 0, 0, 6, 8, 0, 2, 0, 0, 0, 1, 0, 0)),
            (-76.09645742938682, -76.10143090670847, "same",
             (4, 5, 0, 0, 3, 3, 0, 2, 0, 0, 0, 1, 0, 0)),
            (-78.12482509735041, -78.28831123589154, "same",
             (2, 5, 0, 0, 2, 3, 0, 2, 0, 0, 1, 1, 0, 0)),
        ),
    ),
}

#: scenario: day-plan objective, its own LP bound [$], the plan's instances (P, H), the
#: LP + repair's first interval
FLEET_DAY_PLANS = {
    "S1": (
        -19.03281543361154,
        -20.350509902770426,
        ((8, 8, 8, 8, 8, 8, 8, 8), (14, 14, 14, 14, 14, 14, 14, 14), (6, 6, 6, 6, 6, 6, 6, 6),
         (10, 10, 10, 10, 10, 10, 10, 10)),
        (7, 13, 5, 9),
    ),
    "S2": (
        -26.39965466541991,
        -27.65956289881362,
        ((5, 6, 7, 5, 3, 7, 8, 5), (11, 14, 2, 9, 14, 7, 7, 8), (4, 4, 5, 4, 2, 5, 6, 4),
         (9, 10, 2, 7, 10, 5, 5, 6)),
        (5, 11, 4, 9),
    ),
    "S3": (
        -19.113000102711705,
        -20.452077463762606,
        ((8, 8, 8, 8, 8, 8, 8, 8), (14, 14, 14, 14, 14, 14, 14, 14), (6, 6, 6, 6, 6, 6, 6, 6),
         (10, 10, 10, 10, 10, 10, 10, 10)),
        (11, 13, 3, 10),
    ),
    "S4": (
        -26.899997330145865,
        -27.984166630983147,
        ((5, 7, 8, 8, 5, 12, 14, 9), (0, 4, 4, 14, 14, 13, 13, 14), (4, 3, 4, 0, 0, 0, 0, 0),
         (19, 20, 0, 2, 10, 0, 0, 0)),
        (5, 0, 4, 19),
    ),
    "S5": (
        -19.89156718798403,
        -22.038746966929672,
        ((3, 3, 3, 3, 3, 3, 3, 3), (4, 4, 4, 4, 4, 4, 4, 4), (1, 1, 1, 1, 1, 1, 1, 1),
         (0, 0, 0, 0, 0, 0, 0, 0), (5, 5, 5, 5, 5, 5, 5, 5), (8, 8, 8, 8, 8, 8, 8, 8),
         (0, 0, 0, 0, 0, 0, 0, 0), (2, 2, 2, 2, 2, 2, 2, 2), (4, 4, 4, 4, 4, 4, 4, 4),
         (0, 0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0), (4, 4, 4, 4, 4, 4, 4, 4),
         (6, 6, 6, 6, 6, 6, 6, 6), (0, 0, 0, 0, 0, 0, 0, 0)),
        (3, 3, 0, 0, 4, 7, 0, 1, 3, 0, 0, 3, 6, 0),
    ),
    "S6": (
        -28.239253260300693,
        -29.36298082842288,
        ((2, 2, 3, 3, 2, 5, 6, 3), (2, 4, 4, 4, 3, 6, 7, 5), (0, 0, 0, 0, 0, 0, 0, 0),
         (0, 0, 0, 0, 0, 0, 0, 0), (0, 1, 1, 4, 4, 4, 4, 5), (0, 2, 2, 9, 9, 8, 8, 9),
         (0, 0, 0, 0, 0, 0, 0, 0), (2, 1, 1, 0, 0, 0, 0, 0), (2, 2, 3, 0, 0, 0, 0, 0),
         (0, 0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0), (8, 8, 1, 2, 4, 0, 0, 0),
         (10, 12, 0, 0, 5, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0)),
        (2, 2, 0, 0, 0, 0, 0, 2, 2, 0, 0, 8, 10, 0),
    ),
}

#: per step: objective, LP bound [$], committed instances
DR_WEEK = (
    (
        1458.6390200357555,
        1458.0859896334987,
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 4, 0, 6, 8, 0, 0, 6, 9, 0, 9, 9, 0),
    ),
    (
        1450.6189982110059,
        1450.5901594609522,
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 6, 8, 0, 0, 6, 8, 0, 9, 8, 0),
    ),
    (
        1454.1819710374748,
        1454.1533900086715,
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 6, 8, 0, 0, 6, 8, 0, 9, 8, 0),
    ),
    (
        1457.755322605652,
        1457.7281937297562,
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 6, 8, 0, 0, 6, 8, 0, 9, 8, 0),
    ),
    (
        1461.1846619961266,
        1461.157965549269,
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 6, 1, 0, 0, 6, 1, 0, 9, 1, 0),
    ),
    (
        1463.8829769186186,
        1463.8829769186186,
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 6, 1, 0, 0, 6, 1, 0, 9, 1, 0),
    ),
)


# ----------------------------------------------------------------------------- RCDC

BATTERY = Battery(energy_mwh=4.0, power_mw=3.0, charge_efficiency=0.9,
                  discharge_efficiency=0.95)


def random_cases(exact_conditions: bool, n: int = 16) -> Iterator[Case]:
    """Seeded instances of the property tests' distribution (``instances`` there):
    2-4 intervals, wholesale or retail, prices in [0, 100] $/MWh under the exactness
    conditions (export price a fraction of the import price) or in [−40, 100] $/MWh,
    release in quarters of a backlog that fits, a billed peak of 0, 5 or 12 MW."""
    rng = np.random.default_rng(2024 if exact_conditions else 2025)
    lo = 0.0 if exact_conditions else -40.0
    for _ in range(n):
        H = int(rng.integers(2, 5))
        retail = bool(rng.integers(0, 2))
        pi_im = rng.uniform(lo, 100.0, H)
        if retail and exact_conditions:
            pi_ex = rng.uniform(0.0, 1.0, H) * pi_im
        elif retail:
            pi_ex = rng.uniform(lo, 100.0, H)
        else:
            pi_ex = pi_im.copy()
        cf = rng.uniform(0.0, 1.0, H)
        nd = rng.uniform(0.0, 1.2, H)
        released = np.append(np.sort(rng.integers(0, 5, H - 1)), 4) / 4.0
        backlog = float(rng.uniform(0.0, 1.0)) * 0.8 * backlog_room_wu(nd, released)
        peak0 = float(rng.choice([0.0, 5.0, 12.0]))
        yield retail, inputs_of(pi_im, pi_ex, cf, nd), released_state(backlog, released, peak0)


@cache
def _rcdc(H: int, retail: bool, formulation: str, battery: bool = False,
          binary_intervals: int | None = None) -> Problem:
    return new_problem(H, retail, formulation, BATTERY if battery else None, binary_intervals)


def _objective(case: Case, formulation: str, battery: bool = False,
               binary_intervals: int | None = None) -> SolveResult:
    retail, inputs, state = case
    res = _rcdc(inputs.horizon_steps, retail, formulation, battery,
                binary_intervals).solve(inputs, state)
    assert res.status.has_plan and res.cost is not None, res.message
    assert res.cost.carbon_usd == res.cost.switching_usd == res.cost.unserved_usd == 0.0
    return res


def _scale(case: Case) -> float:
    return float(np.abs(case[1].import_price_usd_per_mwh).max(initial=1.0))


@pytest.mark.parametrize("k", range(len(RCDC_UNDER_CONDITIONS)))
def test_rcdc_under_the_exactness_conditions(k: int) -> None:
    """π⁺ >= π⁻ >= 0: the relaxed form (repaired), the exact MILP and the automatic
    choice (the relaxation) give the old optima, with and without a 4 MWh / 3 MW battery."""
    case = list(random_cases(True))[k]
    relaxed, exact, auto, auto_form, bat_exact, bat_relaxed = RCDC_UNDER_CONDITIONS[k]
    scale = _scale(case)
    same(relaxed, _objective(case, "relaxed").objective_usd, scale=scale)
    same(exact, _objective(case, "exact").objective_usd, MIP_RTOL, scale)
    res = _objective(case, "auto")
    assert res.formulation is Formulation(auto_form)
    same(auto, res.objective_usd, scale=scale)
    same(bat_exact, _objective(case, "exact", battery=True).objective_usd, MIP_RTOL, scale)
    assert bat_relaxed is not None
    same(bat_relaxed, _objective(case, "relaxed", battery=True).objective_usd, scale=scale)


@pytest.mark.parametrize("k", range(len(RCDC_ANY_PRICES)))
def test_rcdc_with_any_prices(k: int) -> None:
    """Negative prices, export above import price, staggered release, a billed peak:
    the exact MILP, the automatic choice, binaries integer on interval 0 only (the
    closed loop's setting) and a battery give the old optima."""
    case = list(random_cases(False))[k]
    exact, auto, auto_form, binary1, bat_exact, bat_relaxed = RCDC_ANY_PRICES[k]
    scale = _scale(case)
    same(exact, _objective(case, "exact").objective_usd, MIP_RTOL, scale)
    res = _objective(case, "auto")
    assert res.formulation is Formulation(auto_form)
    same(auto, res.objective_usd, MIP_RTOL, scale)
    same(binary1, _objective(case, "exact", binary_intervals=1).objective_usd, MIP_RTOL, scale)
    same(bat_exact, _objective(case, "exact", battery=True).objective_usd, MIP_RTOL, scale)
    if bat_relaxed is not None:
        same(bat_relaxed, _objective(case, "relaxed", battery=True).objective_usd, scale=scale)


def test_feasibility_scans_equal_an_interval_loop() -> None:
    """The most work per interval (Δ F(min(P̄, supply / PUE))) and the earliest
    cumulative completion (the closed-form scan against the interval-by-interval loop
    ``done[k] = min(A[k], done[k−1] + spare[k])``) on 500 random horizons with
    staggered release."""
    rng = np.random.default_rng(0)
    site = new_problem(1, False).site
    for _ in range(500):
        H = int(rng.integers(1, 30))
        released = rng.uniform(0, 2, H) * (rng.uniform(size=H) < 0.5)
        lmp, cf, nd = rng.uniform(0, 50, H), rng.uniform(0, 1, H), rng.uniform(0, 3, H)
        inputs = inputs_of(lmp, lmp, cf, nd)
        state = PlantState(df_due_cum_wu=np.zeros(H), df_available_cum_wu=np.cumsum(released))
        it_max = np.minimum(CAP_MW, (30.0 + cf * NAMEPLATE_MW) / PUE)
        wmax = DT_H * CAP_MW * np.interp(it_max / CAP_MW, F3.power_frac, F3.work_frac)
        np.testing.assert_allclose(max_work_per_interval_wu(site, inputs)[0], wmax, rtol=1e-12)
        done, total = np.empty(H), 0.0
        for k, (avail, spare) in enumerate(zip(np.cumsum(released),
                                               np.maximum(wmax - nd, 0.0), strict=True)):
            total = min(avail, total + spare)
            done[k] = total
        np.testing.assert_allclose(earliest_completion_wu(site, inputs, state)[0], done,
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("market", ["wholesale", "retail"])
def test_rcdc_receding_windows(market: str) -> None:
    """96-interval windows of the default 100 MW site, each one interval after the
    last (warm re-solves, as in the closed loop): the old optimum and committed interval
    (deferrable work, curtailment, import, export, battery)."""
    prob = Problem(rcdc_site(market), 96, demand_response=False)
    for (inputs, state), stored in zip(rcdc_receding_cases(96, n=12, seed=4),
                                       RCDC_RECEDING[market], strict=True):
        res = prob.solve(inputs, state)
        assert res.plan is not None
        same(stored[0], res.objective_usd)
        d = res.plan.decision(0).campus("dc")
        got = (d.work_df_wu, d.curtailed_mw, d.planned_import_mw, d.planned_export_mw,
               d.battery_charge_mw, d.battery_discharge_mw)
        np.testing.assert_allclose(got, stored[1:], rtol=RTOL, atol=1e-6)


# ----------------------------------------------------------------------------- fleet


def fleet_site(scenario: str) -> Site:
    """Campuses A (NP15, 64 GPUs) and B (SP15, 48 GPUs), PUE 1.2, no import limit, no
    export; qwen3-8b and qwen3-32b with the levers of ``scenario``; carbon at
    California's 2026 auction reserve price."""
    grid = Grid(import_limit_mw=float("inf"))
    campuses = tuple(Campus(name, node, carbon_zone="US-CAL-CISO", gpus=gpus, grid=grid)
                     for name, node, gpus in (("A", "NP15", 64), ("B", "SP15", 48)))
    fleet = Fleet(models=("qwen3-8b", "qwen3-32b"), flexibility=scenario)
    return Site(campuses, fleet, carbon_price_usd_per_t=CA_2026_AUCTION_RESERVE_USD_PER_T)


def fleet_inputs(H: int, seed: int, *, dr: bool = False) -> HorizonInputs:
    """Random demand 10-90 ktokens/s per model, prices −10-90 $/MWh (import and export),
    carbon 100-300 g/kWh; with ``dr`` an event over the middle third and a baseline of
    20-60 kW per campus."""
    rng = np.random.default_rng(seed)
    event = baseline = None
    if dr:
        event = np.zeros((2, H))
        event[:, H // 3: 2 * H // 3] = 1.0
        baseline = rng.uniform(0.02, 0.06, (2, H))
    demand = rng.uniform(1e4, 9e4, (2, H))
    price = rng.uniform(-10, 90, (2, H))
    carbon = rng.uniform(100, 300, (2, H))
    return HorizonInputs(demand, price, price, carbon, np.zeros((2, H)), np.zeros((2, H)),
                         dr_event=event, dr_baseline_mw=baseline)


def _check_fleet(res: SolveResult, objective: float, energy_plus_carbon: float | None = None,
                 rel: float = RTOL) -> Plan:
    """The stored objective and energy + carbon [$]; a campus without renewable,
    battery or export imports its facility power."""
    assert res.plan is not None and res.cost is not None, res.message
    same(objective, res.objective_usd, rel)
    if energy_plus_carbon is not None:
        same(energy_plus_carbon, res.cost.energy_import_usd + res.cost.carbon_usd, rel)
    np.testing.assert_allclose(res.plan.import_mw, res.plan.facility_power_mw, rtol=1e-9,
                               atol=1e-9)
    assert res.cost.export_revenue_usd == 0.0
    return res.plan


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("form", ["lp", "committed_integer"])
def test_fleet_scenarios(scenario: str, form: str) -> None:
    """S1-S6, 8 intervals, a fleet already running: the old optimum and LP bound, and
    the instances and routing committed."""
    prob = Problem(fleet_site(scenario), 8)
    state = PlantState({p: 2 for p in prob.pools if p[2] == "BF16"},
                       may_reprovision=scenario in ("S1", "S3"))
    res = prob.solve(fleet_inputs(8, seed=11), state, form)
    objective, bound, energy, instances, shares = FLEET_SCENARIOS[scenario, form]
    plan = _check_fleet(res, objective, energy)
    same(bound, res.lp_bound_usd)
    if instances is not None and shares is not None:
        fleet = plan.decision(0).fleet
        assert [fleet.instances[p] for p in prob.pools] == list(instances)
        np.testing.assert_allclose([fleet.routing_share.get(p, 0.0) for p in prob.pools],
                                   shares, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("scenario", ["S1", "S4", "S6"])
def test_fleet_full_milp(scenario: str) -> None:
    """Every instance count integer, solved to a 10⁻⁷ gap (3 intervals, a DR event):
    the old MILP optimum; a MIP start (the whole-horizon round-and-fix plan) does not
    change it; the committed MIP (interval 0 integer by branch-and-bound) as before."""
    objective, energy, reward, committed_mip = FLEET_FULL_MILP[scenario]
    options = SolverOptions(full_mip_rel_gap=1e-7, full_time_limit_s=60.0)
    prob = Problem(fleet_site(scenario), 3, options)
    inputs = fleet_inputs(3, seed=1, dr=True)  # (a seed HiGHS proves in < 1 s)
    full = prob.solve(inputs, None, "full_milp")
    _check_fleet(full, objective, energy, MIP_RTOL)
    assert full.cost is not None
    same(reward, full.cost.dr_reward_usd, MIP_RTOL)
    assert full.mip_gap <= 1e-7
    assert full.mip_bound_usd <= full.objective_usd + 1e-6
    dive = prob.solve(inputs, None, integer_intervals=3)
    started = prob.solve(inputs, None, "full_milp", start=dive.plan)
    same(full.objective_usd, started.objective_usd, MIP_RTOL)
    assert full.objective_usd <= dive.objective_usd + 1e-6
    mip = prob.solve(inputs, None, "committed_mip")
    assert mip.plan is not None
    np.testing.assert_allclose(mip.plan.instances[:, 0], np.round(mip.plan.instances[:, 0]))
    same(committed_mip, mip.objective_usd, 1e-4)


@pytest.mark.parametrize("form", ["lp", "committed_integer"])
def test_fleet_dr_day(form: str) -> None:
    """A DR event over the middle third with a baseline per campus (12 intervals, S6):
    reward on the baseline minus grid import, penalty above the cap; the old optimum,
    LP bound net of the DR constant, settlement and reduction per interval."""
    objective, bound, energy, reward, reduction = FLEET_DR_DAY[form]
    res = Problem(fleet_site("S6"), 12).solve(fleet_inputs(12, seed=7, dr=True), None, form)
    plan = _check_fleet(res, objective, energy)
    assert res.cost is not None and res.cost.dr_reward_usd != 0.0
    same(reward, res.cost.dr_reward_usd)
    same(bound, res.lp_bound_usd)
    np.testing.assert_allclose(plan.dr_reduction_mw, reduction, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("fine", "far"), [(3, None), (2, 6)])
def test_fleet_multi_resolution_receding(fine: int, far: int | None) -> None:
    """A coarse tail (columns of 2, then 4 intervals) over a receding window of warm
    re-solves (the fleet state carried from the committed instances, as in the closed
    loop): the old column count, optimum, LP bound, warm start and committed instances
    at every step."""
    options = SolverOptions(fine_steps=fine, coarse_block_steps=2, far_start_steps=far,
                            far_block_steps=4)
    H, N = 12, 18
    prob = Problem(fleet_site("S6"), H, options)
    n_columns, steps = FLEET_MULTIRES[fine, far]
    assert prob.blocked and prob.n_columns == n_columns
    series = fleet_inputs(N, seed=3, dr=True)
    state = PlantState()
    for k, (objective, bound, warm, instances) in enumerate(steps):
        sl = slice(k, k + H)
        assert series.dr_event is not None and series.dr_baseline_mw is not None
        inputs = HorizonInputs(series.demand_tokens_per_s[:, sl],
                               series.import_price_usd_per_mwh[:, sl],
                               series.export_price_usd_per_mwh[:, sl],
                               series.carbon_gco2_per_kwh[:, sl], np.zeros((2, H)),
                               np.zeros((2, H)), dr_event=series.dr_event[:, sl],
                               dr_baseline_mw=series.dr_baseline_mw[:, sl])
        res = prob.solve(inputs, state)
        plan = _check_fleet(res, objective)
        same(bound, res.lp_bound_usd)
        assert prob.last_warm_start == warm
        committed = [round(v) for v in plan.instances[:, 0]]
        assert committed == list(instances)
        state = PlantState(dict(zip(plan.pools, committed, strict=True)))


def test_fleet_day_plans_with_candidates() -> None:
    """The whole-horizon integer plan of the DR study (round-and-fix over every
    interval), re-costing the plans of the scenarios with fewer levers: the old plans.
    Where a candidate wins, the bound and gap stay those of the problem's own
    relaxation. The LP + repair fallback of the closed loop rounds the first interval
    as before."""
    H = 8
    inputs = fleet_inputs(H, seed=13, dr=True)
    plans: list[Plan] = []
    for scenario in SCENARIOS:
        objective, own_bound, instances, first = FLEET_DAY_PLANS[scenario]
        prob = Problem(fleet_site(scenario), H)
        res = solve_day(prob, inputs, None, plans)
        plan = _check_fleet(res, objective)
        np.testing.assert_allclose(plan.instances, instances, atol=1e-6)
        same(own_bound, res.lp_bound_usd)
        gap = (res.objective_usd - own_bound) / abs(res.objective_usd)
        assert res.mip_gap == pytest.approx(max(gap, 0.0), rel=1e-5, abs=1e-9)
        plans.append(plan)
        lp = prob.solve(inputs, None, "lp")
        assert lp.plan is not None
        np.testing.assert_array_equal(prob.round_first_interval(lp.plan).ravel(), first)


def test_dr_study_week(shared_data: Path) -> None:
    """The DR study's fleet (3 campuses × 3 models × 3-4 precisions, CAISO 2021, S6) on
    six consecutive 96-interval steps of the real week, warm as in the closed loop: the
    old optimum, LP bound and committed instances at every step."""
    from mpc_dc.studies.dr import DrStudyConfig, load_dr_data, study_site

    data = load_dr_data(shared_data, DrStudyConfig())
    site = study_site()
    assert site.fleet is not None
    H = 96
    prob = Problem(replace(site, fleet=replace(site.fleet, flexibility="S6")), H)
    state = PlantState()
    for k, (objective, bound, instances) in zip(range(100, 106), DR_WEEK, strict=True):
        sl = slice(k, k + H)
        price = data.price_usd_per_mwh[:, sl]
        none = np.zeros_like(price)
        inputs = HorizonInputs(data.demand_tokens_per_s[:, sl], price, price,
                               data.carbon_gco2_per_kwh[:, sl], none, none)
        res = prob.solve(inputs, state)
        plan = _check_fleet(res, objective)
        same(bound, res.lp_bound_usd)
        committed = [round(v) for v in plan.instances[:, 0]]
        assert committed == list(instances)
        state = PlantState(dict(zip(plan.pools, committed, strict=True)))
