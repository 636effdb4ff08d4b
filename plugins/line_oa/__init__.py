"""LINE Official Account campaign delivery on Apache Airflow.

Library layers (none of them import DAG code): ``campaign``/``messages``/``utm``/``validation``
(the campaign file and its pre-launch checks, no Airflow import), ``simulator`` (a local stand-in for
the LINE Messaging API), ``hooks``/``ledger``/``engine``/``operators`` (delivery), and the DAG factory.
"""

__version__ = "0.1.0"
