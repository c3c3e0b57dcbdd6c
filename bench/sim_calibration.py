"""Print the sim's calibration table (docs/sim.md): win rate by price, longshot EV,
maker/taker excess returns and accuracy by time left, for several bias knobs.

    python bench/sim_calibration.py [--markets 2000] [--seed 1] [--bias 0,0.1,1,2,3]
"""

from __future__ import annotations

import argparse
import time

from kalshi_rl.sim.calibration import markdown, measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--markets", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bias", default="0,0.1,1,2,3")
    a = ap.parse_args()
    t0 = time.perf_counter()
    res = [measure(float(b), markets=a.markets, seed=a.seed) for b in a.bias.split(",")]
    print(markdown(res))
    print(f"\n{a.markets} markets per bias, seed {a.seed}, {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
