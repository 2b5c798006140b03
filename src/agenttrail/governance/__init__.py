"""Governance at the gateway: budgets, alerts, rate limits, routing and the response cache.

One concept per module; `policy.GovernancePolicy` composes them behind the gateway's Policy seam and
`install.install` wires it into `agenttrail serve`. See docs/governance.md.
"""
