//! Image references: parsing and docker.io normalisation.
