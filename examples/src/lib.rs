//! Examples: see `src/bin/`.
