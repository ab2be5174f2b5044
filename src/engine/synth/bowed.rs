//! Bowed strings, organs and voices: sustained additive and formant synths.
