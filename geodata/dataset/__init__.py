"""The reference dataset of Baoji's grids: its layer contract, generator and importer."""
