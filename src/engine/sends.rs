//! The effect sends of sample voices, on the audio thread: each channel's reverb and
//! chorus sends go through a reverb and a chorus with that channel's settings (type,
//! decay, rate, depth) and its volume. Reverb and chorus are linear, so channels
//! whose settings are the same share one instance: it sounds as if each had its own,
//! at the cost of one (a General MIDI file's sixteen channels send to one reverb, as
//! in FluidSynth). Only when every slot is taken by other settings does a channel's
//! own bus process its sends.
//!
//! The same holds for channel buses whose reverb settings are the same (the snapshot
//! groups them, `Snapshot::plan_shared_reverbs`): each feeds its reverb input, with
//! its reverb mix, volume and centred pan applied, into one reverb per setting here.
//!
//! A reverb's tick is prepared before its input exists (`Reverb::prepare`: the
//! lines' reads, its output and its feedback), so the engine hands that part to the
//! render threads beside the channels ([`Sends::prepare_items`]); after the channels
//! only the input's diffusion and the lines' writes are left (`Reverb::finish`).

use crate::dsp::chorus::Chorus;
use crate::dsp::reverb::Reverb;
use crate::engine::TICK_FRAMES;
use crate::engine::channel::Work;
use crate::engine::snapshot::{MAX_SHARED_REVERBS, SharedReverb};
use crate::params::{Param, ParamValues};

/// Distinct send settings processed at once.
pub const SEND_SLOTS: usize = 4;
/// How long a slot keeps running after its last send, beyond the reverb's decay.
const TAIL_SECONDS: f32 = 0.5;
/// How long a slot's chorus runs after its last chorus send (longer than its delay line).
const CHORUS_TAIL_SECONDS: f32 = 0.1;
/// Reverbs the channel buses share: a snapshot's groups, and as many again for the
/// tails of the groups of the snapshot before (a reload that changes a group's
/// settings lets its tail ring out in its own reverb).
pub const BUS_REVERB_SLOTS: usize = 2 * MAX_SHARED_REVERBS;
/// Shared reverbs that can sound at once: the channel buses' and the sends'.
pub const SHARED_REVERBS: usize = BUS_REVERB_SLOTS + SEND_SLOTS;
/// How fast a shared reverb's measured cost of preparing a tick follows its latest
/// tick (a moving average, for the hand-out).
const COST_SMOOTHING: f32 = 0.05;

/// What makes two channels' sends shareable.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Key {
    reverb_type: u32,
    reverb_decay: u32,
    chorus_rate: u32,
    chorus_depth: u32,
}

impl Key {
    fn of(p: &ParamValues) -> Self {
        Key {
            reverb_type: p.get(Param::ReverbType).to_bits(),
            reverb_decay: p.get(Param::ReverbDecay).to_bits(),
            chorus_rate: p.get(Param::ChorusRate).to_bits(),
            chorus_depth: p.get(Param::ChorusDepth).to_bits(),
        }
    }
}

struct Slot {
    key: Option<Key>,
    params: ParamValues,
    reverb: Reverb,
    chorus: Chorus,
    rev_in: [f32; TICK_FRAMES],
    cho_in: [f32; TICK_FRAMES],
    /// Frames left to run after the last send (the reverb), and after the last
    /// chorus send (the chorus).
    tail: u32,
    chorus_tail: u32,
    fed: bool,
    /// The reverb's preparation: what this tick's took on a render thread (0: not
    /// prepared there), and its moving average, in nanoseconds.
    spent_nanos: f32,
    cost_nanos: f32,
}

/// A reverb shared by channel buses.
struct BusReverb {
    key: Option<SharedReverb>,
    reverb: Reverb,
    input: [f32; TICK_FRAMES],
    fed: bool,
    /// Frames left to run after the last feed.
    tail: u32,
    /// As for [`Slot`].
    spent_nanos: f32,
    cost_nanos: f32,
}

pub struct Sends {
    sr: f32,
    slots: Vec<Slot>,
    bus_reverbs: Vec<BusReverb>,
    /// Shared reverb tails cut short because every slot was taken (counted).
    pub tails_cut: u64,
    wet_l: [f32; TICK_FRAMES],
    wet_r: [f32; TICK_FRAMES],
}

impl Sends {
    /// Allocates every slot (control side).
    pub fn new(sample_rate: f32) -> Self {
        Sends {
            sr: sample_rate,
            slots: (0..SEND_SLOTS)
                .map(|_| Slot {
                    key: None,
                    params: ParamValues::default(),
                    reverb: Reverb::new(sample_rate),
                    chorus: Chorus::new(sample_rate),
                    rev_in: [0.0; TICK_FRAMES],
                    cho_in: [0.0; TICK_FRAMES],
                    tail: 0,
                    chorus_tail: 0,
                    fed: false,
                    spent_nanos: 0.0,
                    cost_nanos: 0.0,
                })
                .collect(),
            bus_reverbs: (0..BUS_REVERB_SLOTS)
                .map(|_| BusReverb {
                    key: None,
                    reverb: Reverb::new(sample_rate),
                    input: [0.0; TICK_FRAMES],
                    fed: false,
                    tail: 0,
                    spent_nanos: 0.0,
                    cost_nanos: 0.0,
                })
                .collect(),
            tails_cut: 0,
            wet_l: [0.0; TICK_FRAMES],
            wet_r: [0.0; TICK_FRAMES],
        }
    }

    /// Takes a channel's sends for this tick, scaled by `volume`. Returns false when
    /// no slot can take them (the channel's bus then processes them itself).
    pub fn feed(&mut self, params: &ParamValues, volume: f32, reverb: &[f32], chorus: &[f32]) -> bool {
        let key = Key::of(params);
        let slot = match self.slots.iter().position(|s| s.key == Some(key)) {
            Some(i) => i,
            None => match self.slots.iter().position(|s| s.key.is_none()) {
                Some(i) => {
                    let s = &mut self.slots[i];
                    s.key = Some(key);
                    s.params = *params;
                    s.reverb.clear();
                    s.chorus.clear();
                    i
                }
                None => return false,
            },
        };
        let s = &mut self.slots[slot];
        if !s.fed {
            s.rev_in = [0.0; TICK_FRAMES];
            s.cho_in = [0.0; TICK_FRAMES];
            s.fed = true;
        }
        for (a, x) in s.rev_in.iter_mut().zip(reverb) {
            *a += x * volume;
        }
        for (a, x) in s.cho_in.iter_mut().zip(chorus) {
            *a += x * volume;
        }
        if chorus.iter().any(|x| *x != 0.0) {
            s.chorus_tail = (CHORUS_TAIL_SECONDS * self.sr) as u32;
        }
        let (type_decay, _) = super::bus::reverb_character(params);
        s.tail = ((params.get(Param::ReverbDecay) * type_decay * 1.5 + TAIL_SECONDS) * self.sr) as u32;
        true
    }

    /// Adds a channel bus's reverb input for this tick (its mix, volume and pan
    /// applied) into the shared reverb of `key`. Called in channel order.
    pub fn feed_bus_reverb(&mut self, key: SharedReverb, x: &[f32; TICK_FRAMES]) {
        let slots = &mut self.bus_reverbs;
        let i = match slots.iter().position(|s| s.key == Some(key)) {
            Some(i) => i,
            None => {
                let i = match slots.iter().position(|s| s.key.is_none()) {
                    Some(i) => i,
                    None => {
                        // Every slot rings: the tail closest to its end is cut.
                        self.tails_cut += 1;
                        (0..slots.len()).min_by_key(|&i| slots[i].tail).unwrap_or(0)
                    }
                };
                let s = &mut slots[i];
                s.key = Some(key);
                s.reverb.clear();
                s.fed = false;
                i
            }
        };
        let s = &mut slots[i];
        if !s.fed {
            s.input = *x;
            s.fed = true;
        } else {
            for (a, b) in s.input.iter_mut().zip(x) {
                *a += b;
            }
        }
        let (type_decay, _) = super::bus::reverb_type_character(key.reverb_type);
        s.tail = ((key.reverb_decay * type_decay * 1.5 + TAIL_SECONDS) * self.sr) as u32;
    }

    /// The shared reverbs sounding before this tick's channels run, each with its
    /// settings made, as work items that prepare their tick (`Reverb::prepare`): they
    /// need nothing of the channels, so they can run on any thread beside them. One
    /// that a send of this tick then moves to other settings (or clears) is prepared
    /// again in [`Sends::process`]: the output is the same whether these items ran
    /// or not. Writes at most `out.len()` items; returns how many.
    ///
    /// # Safety
    /// The items point into `self`: they must have run, if at all, before `self` is
    /// used again.
    pub(super) unsafe fn prepare_items(&mut self, out: &mut [Work]) -> usize {
        let mut m = 0;
        for s in self.bus_reverbs.iter_mut() {
            let Some(key) = s.key else { continue };
            if m == out.len() {
                return m;
            }
            set_character(&mut s.reverb, key.reverb_type, key.reverb_decay);
            // SAFETY: the reverb and its time are used through this item alone until
            // it has run (the contract).
            out[m] = unsafe { Work::reverb(&mut s.reverb, &mut s.spent_nanos, s.cost_nanos) };
            m += 1;
        }
        for s in self.slots.iter_mut().filter(|s| s.key.is_some()) {
            if m == out.len() {
                return m;
            }
            let (reverb_type, decay) = (s.params.get(Param::ReverbType), s.params.get(Param::ReverbDecay));
            set_character(&mut s.reverb, reverb_type, decay);
            // SAFETY: as above.
            out[m] = unsafe { Work::reverb(&mut s.reverb, &mut s.spent_nanos, s.cost_nanos) };
            m += 1;
        }
        m
    }

    /// Runs every active slot and adds its output into the mix; frees slots whose
    /// tails have ended.
    pub fn process(&mut self, mix_l: &mut [f32; TICK_FRAMES], mix_r: &mut [f32; TICK_FRAMES]) {
        let sr = self.sr;
        for s in self.bus_reverbs.iter_mut() {
            let Some(key) = s.key else { continue };
            if !s.fed {
                s.input = [0.0; TICK_FRAMES];
            }
            s.fed = false;
            let wet = (&mut self.wet_l, &mut self.wet_r);
            add_reverb(&mut s.reverb, key.reverb_type, key.reverb_decay, &s.input, wet, mix_l, mix_r);
            settle_cost(&mut s.spent_nanos, &mut s.cost_nanos);
            s.tail = s.tail.saturating_sub(TICK_FRAMES as u32);
            if s.tail == 0 {
                s.key = None;
            }
        }
        for s in self.slots.iter_mut().filter(|s| s.key.is_some()) {
            if !s.fed {
                s.rev_in = [0.0; TICK_FRAMES];
                s.cho_in = [0.0; TICK_FRAMES];
            }
            s.fed = false;
            let (reverb_type, decay) = (s.params.get(Param::ReverbType), s.params.get(Param::ReverbDecay));
            let wet = (&mut self.wet_l, &mut self.wet_r);
            add_reverb(&mut s.reverb, reverb_type, decay, &s.rev_in, wet, mix_l, mix_r);
            settle_cost(&mut s.spent_nanos, &mut s.cost_nanos);
            if s.chorus_tail > 0 {
                s.chorus_tail = s.chorus_tail.saturating_sub(TICK_FRAMES as u32);
                s.chorus.process(
                    &s.cho_in,
                    s.params.get(Param::ChorusRate),
                    s.params.get(Param::ChorusDepth),
                    sr,
                    &mut self.wet_l,
                    &mut self.wet_r,
                );
                for i in 0..TICK_FRAMES {
                    mix_l[i] += self.wet_l[i];
                    mix_r[i] += self.wet_r[i];
                }
            }
            s.tail = s.tail.saturating_sub(TICK_FRAMES as u32);
            if s.tail == 0 {
                s.key = None;
            }
        }
    }
}

/// Gives `reverb` a type's character and `decay`.
fn set_character(reverb: &mut Reverb, reverb_type: f32, decay: f32) {
    let (type_decay, damping) = super::bus::reverb_type_character(reverb_type);
    reverb.set_decay(decay * type_decay);
    reverb.set_damping(damping);
}

/// Takes a reverb's preparation time of this tick, if it was prepared on a render
/// thread, into its moving average.
fn settle_cost(spent_nanos: &mut f32, cost_nanos: &mut f32) {
    if *spent_nanos > 0.0 {
        *cost_nanos += (*spent_nanos - *cost_nanos) * COST_SMOOTHING;
        *spent_nanos = 0.0;
    }
}

/// Runs `reverb` with a type's character and `decay` over `input` (finishing the
/// tick [`Sends::prepare_items`] prepared, or the whole tick) and adds its wet
/// output (in the scratch `wet`) into the mix; clears it after a numeric fault.
fn add_reverb(
    reverb: &mut Reverb,
    reverb_type: f32,
    decay: f32,
    input: &[f32; TICK_FRAMES],
    wet: (&mut [f32; TICK_FRAMES], &mut [f32; TICK_FRAMES]),
    mix_l: &mut [f32; TICK_FRAMES],
    mix_r: &mut [f32; TICK_FRAMES],
) {
    set_character(reverb, reverb_type, decay);
    reverb.finish(input, wet.0, wet.1);
    for i in 0..TICK_FRAMES {
        mix_l[i] += wet.0[i];
        mix_r[i] += wet.1[i];
    }
    if !reverb.is_finite() {
        reverb.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shared reverbs prepared ahead of their input (as the render threads do beside
    /// the channels) give the same mix bit for bit as reverbs run whole, through
    /// groups that come and go, a group's tail cut for a new one, and sends whose
    /// settings change; every reverb that keeps its settings uses its preparation.
    #[test]
    fn shared_reverbs_prepared_ahead_mix_the_same_bit_for_bit() {
        let (mut ahead, mut whole) = (Sends::new(48_000.0), Sends::new(48_000.0));
        let mut seed = 3u32;
        let mut noise = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 23) as f32 - 1.0
        };
        let (mut used, mut made) = (0, 0);
        for tick in 0..3000usize {
            let mut items = [Work::NONE; SHARED_REVERBS];
            // SAFETY: the items run here, before `ahead` is used again.
            let n = unsafe { ahead.prepare_items(&mut items) };
            for w in &mut items[..n] {
                // SAFETY: each item once, on this thread.
                assert!(unsafe { w.run_reverb() });
            }
            made += n;
            let x: [f32; TICK_FRAMES] = std::array::from_fn(|_| noise() * 0.1);
            let y: [f32; TICK_FRAMES] = std::array::from_fn(|_| noise() * 0.1);
            // Groups: two steady ones, one every 500 ticks with a new decay (the
            // slots run out and tails are cut), one only now and then.
            let groups = [
                SharedReverb { reverb_type: 0.0, reverb_decay: 1.0 },
                SharedReverb { reverb_type: 2.0, reverb_decay: 2.5 },
                SharedReverb { reverb_type: 1.0, reverb_decay: 0.5 + (tick / 500) as f32 * 0.25 },
                SharedReverb { reverb_type: 3.0, reverb_decay: 0.3 },
            ];
            let mut params = ParamValues::default();
            params.set(Param::ReverbDecay, 1.0 + (tick / 700) as f32);
            for sends in [&mut ahead, &mut whole] {
                for (g, key) in groups.iter().enumerate() {
                    if g < 3 || tick % 400 < 50 {
                        sends.feed_bus_reverb(*key, if g % 2 == 0 { &x } else { &y });
                    }
                }
                if tick < 2500 {
                    assert!(sends.feed(&params, 0.8, &x, &y));
                }
            }
            let waiting = ahead.bus_reverbs.iter().filter(|s| s.key.is_some()).map(|s| &s.reverb);
            let waiting = waiting.chain(ahead.slots.iter().filter(|s| s.key.is_some()).map(|s| &s.reverb));
            used += waiting.filter(|r| r.prepared_frames() == TICK_FRAMES).count();
            let (mut al, mut ar, mut wl, mut wr) =
                ([0.0; TICK_FRAMES], [0.0; TICK_FRAMES], [0.0; TICK_FRAMES], [0.0; TICK_FRAMES]);
            ahead.process(&mut al, &mut ar);
            whole.process(&mut wl, &mut wr);
            assert!(
                al.iter().zip(&wl).chain(ar.iter().zip(&wr)).all(|(a, b)| a.to_bits() == b.to_bits()),
                "tick {tick} differs when the shared reverbs are prepared ahead"
            );
        }
        assert!(ahead.tails_cut > 0, "no tail was cut: the test misses that path");
        // Most preparations are used; those of reverbs moved to new settings are not.
        assert!(made > 0 && used < made && used * 10 > made * 9, "{used} of {made} preparations used");
    }

    /// More shared reverbs ringing at once than there are slots: the tail nearest
    /// its end is cut, and counted (the engine reports the count).
    #[test]
    fn a_shared_reverb_tail_cut_short_is_counted() {
        let mut sends = Sends::new(48_000.0);
        let (mut l, mut r) = ([0.0f32; TICK_FRAMES], [0.0f32; TICK_FRAMES]);
        let x = [0.1f32; TICK_FRAMES];
        for i in 0..=BUS_REVERB_SLOTS {
            let key = SharedReverb { reverb_type: 0.0, reverb_decay: 1.0 + i as f32 * 0.1 };
            sends.feed_bus_reverb(key, &x);
            sends.process(&mut l, &mut r);
            let expected = i.saturating_sub(BUS_REVERB_SLOTS - 1) as u64;
            assert_eq!(sends.tails_cut, expected, "after {} groups", i + 1);
        }
    }
}
