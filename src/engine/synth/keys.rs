//! Keys and mallets: pianos, electric pianos, tuned percussion, bells and bowls.
