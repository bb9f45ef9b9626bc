//! Length-header framing.
