//! Plucked strings: Karplus-Strong families (guitars, basses, banjo, sitar, ...).
