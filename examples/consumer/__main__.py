"""Reads hcloud-talos-autoscaler's stack outputs, as another team's stack would.

Attach your own servers to the autoscaler's private network with
``hcloud.ServerNetwork(network_id=...)``, boot them from the same Talos images,
or point tooling at the autoscaler's namespace.
"""

import pulumi

producer = pulumi.StackReference(pulumi.Config().require("producerStack"))

# require_output fails the preview when the producer does not export the name.
network_id = producer.require_output("networkId")
image_ids = producer.require_output("imageIds")
autoscaler_namespace = producer.require_output("autoscalerNamespace")

pulumi.export("privateNetworkId", network_id.apply(int))
pulumi.export("talosImageAmd64", image_ids.apply(lambda ids: ids.get("amd64")))
pulumi.export("talosImageArm64", image_ids.apply(lambda ids: ids.get("arm64")))
pulumi.export(
    "autoscalerLogsCommand",
    autoscaler_namespace.apply(
        lambda namespace: (
            f"kubectl -n {namespace} logs "
            "deployment/cluster-autoscaler-hetzner-hetzner-cluster-autoscaler -f"
        )
    ),
)
