#!/usr/bin/env python3
"""Fit the library's level trims to its loudness target.

Usage: python3 scripts/fit-levels.py PATH/TO/jamrig

Runs `jamrig levels --range` (every preset at its reference note and across its
range, momentary maximum loudness per EBU R128), then updates each preset's entry
in scripts/preset-levels.json: its `level` trim (dB) so that the reference note
reads the target (plus the preset's family voicing), and its keyboard level
scaling (`key_level_low`, `key_level_high`, dB per octave below and above C4) so
that the notes of its range stay within a few LU of the reference note. Ranges in
the file are kept as they are (they are chosen by hand). Run it, regenerate the
stdlib (scripts/gen-stdlib.py), rebuild, and run it again until nothing moves:
distortion makes the level of a driven preset depend on its key scaling.
Python 3 stdlib only.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

LEVELS_FILE = Path(__file__).resolve().parent / "preset-levels.json"
TARGET_LUFS = -20.0
# Family voicing (LU from the target), written down in stdlib/README.md: pads and
# textures sit a little under a lead or a bass, as a musician sets them.
VOICING = {
    "synth_pad": -1.5,
    "analog_pad": -1.5,
    "granular_pad": -1.5,
    "granular_texture": -1.5,
}
# Key scaling is only fitted where the range strays this far from the reference.
FLAT_ENOUGH_LU = 1.5
# Key scaling that keeps the range within this stays as it is (the fit settles).
KEEP_LU = 2.0
SLOPES = [x * 0.25 for x in range(-36, 37)]


def measure(binary):
    out = subprocess.run([binary, "levels", "--range"], check=True, capture_output=True, text=True).stdout
    rows = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\S+)\s+(\S+)\s+(-?[\d.]+)\s+([+-][\d.]+)\s+([\d.]+)$", line)
        if not m or i + 1 >= len(lines):
            continue
        name = m.group(1)
        notes = {}
        for part in lines[i + 1].split(","):
            n, d = part.split()
            notes[int(n)] = float(d) + TARGET_LUFS
        rows[name] = (float(m.group(3)), notes)
    return rows


def key_db(note, low, high):
    octaves = (note - 60) / 12.0
    return (low if octaves < 0 else high) * abs(octaves)


def fit(entry, reference, notes):
    """New (level, low, high) from the measured levels with the entry's settings."""
    low0, high0 = entry.get("key_level_low", 0.0), entry.get("key_level_high", 0.0)
    ref_note = min(notes, key=lambda n: abs(notes[n] - reference) + (0 if notes[n] == reference else 1))
    # The levels without any key scaling.
    raw = {n: l - key_db(n, low0, high0) for n, l in notes.items()}

    def spread(low, high):
        r = raw[ref_note] + key_db(ref_note, low, high)
        return max(abs(raw[n] + key_db(n, low, high) - r) for n in raw)

    if spread(0.0, 0.0) <= FLAT_ENOUGH_LU:
        low, high = 0.0, 0.0
    elif spread(low0, high0) <= KEEP_LU:
        low, high = low0, high0
    else:
        best = None
        for low in SLOPES if any(n < 60 for n in raw) else [0.0]:
            for high in SLOPES if any(n > 60 for n in raw) else [0.0]:
                score = spread(low, high) + 0.05 * (abs(low) + abs(high))
                if best is None or score < best[0]:
                    best = (score, low, high)
        _, low, high = best
    now = raw[ref_note] + key_db(ref_note, low, high)
    return ref_note, low, high, now


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: python3 scripts/fit-levels.py PATH/TO/jamrig\n")
        return 2
    levels = json.loads(LEVELS_FILE.read_text()) if LEVELS_FILE.exists() else {}
    rows = measure(argv[1])
    for name, (reference, notes) in sorted(rows.items()):
        entry = levels.setdefault(name, {})
        ref_note, low, high, now = fit(entry, reference, notes)
        level = entry.get("level", 0.0) + TARGET_LUFS + VOICING.get(name, 0.0) - now
        entry["level"] = round(level, 1)
        entry["key_level_low"] = low
        entry["key_level_high"] = high
        for k in ("level", "key_level_low", "key_level_high"):
            if entry[k] == 0.0:
                del entry[k]
        if not entry:
            del levels[name]
        print("%-20s ref %3d %6.1f LUFS -> level %+5.1f, key %+5.2f / %+5.2f dB/oct"
              % (name, ref_note, reference, level, low, high))
    text = json.dumps(dict(sorted(levels.items())), indent=1, sort_keys=True)
    LEVELS_FILE.write_text(text + "\n")
    print("wrote %s" % LEVELS_FILE.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
