"""What the tests share: test doubles, data builders and helpers, imported by test
modules and conftest files alike (fixtures stay in the conftest files). No test module
imports another; the loopback stub vendor is leadflow.loopback_vendor's FaultServer."""
