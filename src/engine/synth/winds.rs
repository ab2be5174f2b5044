//! Winds and reeds: flutes, brass, reeds, bagpipe, theremin, pedal steel.
