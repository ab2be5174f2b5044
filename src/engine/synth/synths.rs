//! Synthesizers: mellotron, hard sync, ring modulation, wavefolding, analog drift, granular.
