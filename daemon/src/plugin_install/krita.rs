//! Krita plugin installer (owned by the Krita plugin work).
