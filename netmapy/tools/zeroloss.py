"""Zero-loss throughput search (RFC 2544 section 26.1): the highest offered
rate at which a device under test loses nothing, found with paced trials.

    best, trials = search(run_trial, ceiling)

``run_trial(rate)`` offers ``rate`` packets per second for one trial and
returns a dict with at least ``offered_pps`` (what the generator really
sent per second) and ``lost`` (packets that did not arrive); ``lossless``
(optional) overrides the default test ``lost <= tolerance * sent``.

The search tries the ceiling first (the hour's top rate: a device that
keeps up there needs no search), then halves the interval between the
highest lossless and the lowest lossy rate until it is narrower than
``resolution`` of the ceiling or ``max_trials`` trials were run.  The
result is the highest *offered* rate (as measured) of a lossless trial.
"""


def lossless(r, tolerance):
    if "lossless" in r:
        return bool(r["lossless"])
    sent = max(1, r.get("sent", 0))
    return r["lost"] <= tolerance * sent


def search(run_trial, ceiling, floor=0.0, resolution=0.05, max_trials=8, tolerance=0.0,
           report=None):
    """(best offered pps, [trial results in the order run]); best is 0
    when no trial was lossless."""
    trials = []
    best = 0.0

    def trial(rate):
        r = run_trial(rate)
        r["requested_pps"] = rate
        r["lossless"] = lossless(r, tolerance)
        trials.append(r)
        if report:
            report(r)
        return r

    r = trial(ceiling)
    if r["lossless"]:
        return r["offered_pps"], trials
    lo, hi = floor, ceiling
    while len(trials) < max_trials and hi - lo > resolution * ceiling:
        mid = (lo + hi) / 2
        r = trial(mid)
        if r["lossless"]:
            lo = mid
            best = max(best, r["offered_pps"])
        else:
            hi = mid
    return best, trials
