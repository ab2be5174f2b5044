// The conformance reference for jamrig's mini-notation: prints, as JSON lines, the
// events that Strudel itself (@strudel/mini and @strudel/core) plays for each case
// of a corpus in its first cycles. Run by tests/mini_conformance.rs:
//   node tests/strudel/events.mjs CASES.json CYCLES
// CASES.json is a list of { id, mini } (a mini-notation string) or { id, expr } (a
// JavaScript expression over Strudel's functions, with `|x| body` closures written
// the Rhai way). Each event prints as
//   {"id":..,"begin":[num,den],"end":[num,den],"value":..,"midi":..}
// (midi: Strudel's own note number for note names and numbers, else null), and a
// case Strudel cannot play prints {"id":..,"error":".."}.
import * as strudel from '@strudel/core';
import { mini, miniAllStrings } from '@strudel/mini';
import { readFileSync } from 'node:fs';

miniAllStrings();
const [file, cyclesArg] = process.argv.slice(2);
const cycles = Number(cyclesArg ?? 8);
const cases = JSON.parse(readFileSync(file, 'utf8'));
const scope = { ...strudel, mini };
const names = Object.keys(scope).filter((n) => /^[A-Za-z_$][\w$]*$/.test(n));

function evaluate(expr) {
  const js = expr.replace(/\|(\w+)\|/g, '($1) =>');
  return new Function(...names, `return (${js});`)(...names.map((n) => scope[n]));
}

function midiOf(v) {
  if (Array.isArray(v)) return midiOf(v[0]);
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && strudel.isNote(v)) return strudel.noteToMidi(v);
  return null;
}

const frac = (f) => [f.s * f.n, f.d];
const out = [];
for (const c of cases) {
  try {
    const pat = c.expr !== undefined ? evaluate(c.expr) : mini(c.mini);
    const haps = pat.query(new strudel.State(new strudel.TimeSpan(strudel.Fraction(0), strudel.Fraction(cycles))));
    for (const h of haps) {
      if (!h.whole || !h.whole.begin.equals(h.part.begin)) continue;
      out.push(JSON.stringify({ id: c.id, begin: frac(h.whole.begin), end: frac(h.whole.end), value: h.value, midi: midiOf(h.value) }));
    }
  } catch (e) {
    out.push(JSON.stringify({ id: c.id, error: String(e && e.message ? e.message : e) }));
  }
}
process.stdout.write(out.join('\n') + '\n');
