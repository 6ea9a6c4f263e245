//! GIMP plugin installer (owned by the GIMP plugin work).
