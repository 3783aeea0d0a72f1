"""The add-on's backend process: ``dphm serve`` speaks :mod:`dphm.server.protocol` on stdio."""
