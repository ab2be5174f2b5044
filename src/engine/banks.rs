//! The sample banks the engine holds, on the audio thread: a fixed table of slots,
//! each an `Arc` of a bank that the current snapshot names or that sounding voices
//! still play. A bank neither names nor plays is handed back to the control side
//! to be freed (the engine never drops the last reference itself), so a reload
//! that replaces a sample never cuts a sounding note.

use crate::tables::bank::SampleBank;
use std::sync::Arc;

/// Banks the engine can hold at once (the snapshot's and those voices still play).
pub const MAX_BANK_SLOTS: usize = 64;
/// Banks one snapshot may name.
pub const MAX_SNAPSHOT_BANKS: usize = 32;
/// A snapshot bank that has no slot.
pub const NO_SLOT: u8 = u8::MAX;

pub struct BankSlots {
    slots: [Option<Arc<SampleBank>>; MAX_BANK_SLOTS],
    /// Voices playing each slot's bank.
    voices: [u32; MAX_BANK_SLOTS],
    /// Whether the current snapshot names the slot's bank.
    named: [bool; MAX_BANK_SLOTS],
}

impl Default for BankSlots {
    fn default() -> Self {
        BankSlots { slots: std::array::from_fn(|_| None), voices: [0; MAX_BANK_SLOTS], named: [false; MAX_BANK_SLOTS] }
    }
}

impl BankSlots {
    pub fn get(&self, slot: u8) -> Option<&SampleBank> {
        self.slots.get(slot as usize).and_then(|s| s.as_deref())
    }

    /// Takes a snapshot's banks: fills `map` (snapshot index to slot), keeps banks
    /// already held, and hands `retire` every bank no longer named or played.
    /// Returns how many banks found no slot. Audio thread: clones `Arc`s (no
    /// allocation), drops none.
    pub fn adopt(
        &mut self,
        banks: &[Arc<SampleBank>],
        map: &mut [u8; MAX_SNAPSHOT_BANKS],
        mut retire: impl FnMut(Arc<SampleBank>),
    ) -> u32 {
        self.named = [false; MAX_BANK_SLOTS];
        map.fill(NO_SLOT);
        let mut missing = 0;
        for (i, bank) in banks.iter().enumerate().take(MAX_SNAPSHOT_BANKS) {
            let held = self.slots.iter().position(|s| s.as_ref().is_some_and(|b| Arc::ptr_eq(b, bank)));
            let slot = held.or_else(|| {
                // A free slot, or one whose bank nothing uses any more.
                let free = self.slots.iter().position(|s| s.is_none()).or_else(|| {
                    (0..MAX_BANK_SLOTS).find(|&k| !self.named[k] && self.voices[k] == 0 && self.slots[k].is_some())
                })?;
                if let Some(old) = self.slots[free].take() {
                    retire(old);
                }
                self.slots[free] = Some(bank.clone());
                self.voices[free] = 0;
                Some(free)
            });
            match slot {
                Some(k) => {
                    self.named[k] = true;
                    map[i] = k as u8;
                }
                None => missing += 1,
            }
        }
        missing += banks.len().saturating_sub(MAX_SNAPSHOT_BANKS) as u32;
        for k in 0..MAX_BANK_SLOTS {
            if !self.named[k]
                && self.voices[k] == 0
                && let Some(old) = self.slots[k].take()
            {
                retire(old);
            }
        }
        missing
    }

    pub fn voice_started(&mut self, slot: u8) {
        if let Some(v) = self.voices.get_mut(slot as usize) {
            *v += 1;
        }
    }

    /// A voice of `slot` ended; its bank goes to `retire` if nothing else needs it.
    pub fn voice_ended(&mut self, slot: u8, retire: impl FnOnce(Arc<SampleBank>)) {
        let k = slot as usize;
        if k >= MAX_BANK_SLOTS {
            return;
        }
        self.voices[k] = self.voices[k].saturating_sub(1);
        if self.voices[k] == 0
            && !self.named[k]
            && let Some(old) = self.slots[k].take()
        {
            retire(old);
        }
    }

    /// Banks held now.
    pub fn held(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}
