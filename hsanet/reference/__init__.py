"""The reference set behind the app's embedding map: :mod:`~hsanet.reference.store` loads one and
places new molecules on it; :mod:`~hsanet.reference.build` makes one (``hsanet reference build``)."""
