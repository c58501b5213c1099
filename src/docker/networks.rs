//! Network and volume calls.

use std::collections::HashMap;

use bollard::models::{
    EndpointSettings, Network, NetworkConnectRequest, NetworkCreateRequest, Volume,
};
use bollard::query_parameters::{
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, RemoveVolumeOptions,
};

use super::call::request;
use super::client::client;
use super::policy;
use crate::error::Result;
use crate::labels;

/// Creates a bridge network `name` with `labels`; returns its id.
pub(crate) async fn create_network(
    name: &str,
    mut labels: HashMap<String, String>,
) -> Result<String> {
    labels::add_proof(&mut labels, name);
    let body = NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some("bridge".to_owned()),
        labels: Some(labels),
        ..Default::default()
    };
    let d = client().await?;
    let created = request(&policy::CREATE_NETWORK, name, || {
        d.create_network(body.clone())
    })
    .await?;
    Ok(created.id)
}

/// The gateway address of network `name` (its first IPAM config's): the
/// host, as the network's containers reach it.
pub(crate) async fn network_gateway(name: &str) -> Result<Option<String>> {
    let d = client().await?;
    let network = request(&policy::INSPECT_NETWORK, name, || {
        d.inspect_network(
            name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
    })
    .await?;
    Ok(network
        .ipam
        .and_then(|ipam| ipam.config)
        .into_iter()
        .flatten()
        .find_map(|c| c.gateway)
        .filter(|g| !g.is_empty()))
}

/// Connects container `container` (id or name) to network `id` under
/// `aliases`.
pub(crate) async fn connect_network(
    id: &str,
    name: &str,
    container: &str,
    aliases: &[String],
) -> Result<()> {
    let body = NetworkConnectRequest {
        container: container.to_owned(),
        endpoint_config: Some(EndpointSettings {
            aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
            ..Default::default()
        }),
    };
    let d = client().await?;
    request(&policy::CONNECT_NETWORK, name, || {
        d.connect_network(id, body.clone())
    })
    .await
}

/// Removes a network; already gone counts as success. 403 or 409 means
/// containers are still attached.
pub(crate) async fn remove_network(id: &str, name: &str) -> Result<()> {
    let p = &policy::REMOVE_NETWORK;
    let d = client().await?;
    p.settle(request(p, name, || d.remove_network(id)).await)
}

/// Every network carrying `label`.
pub(crate) async fn list_networks(label: &str) -> Result<Vec<Network>> {
    let filters = HashMap::from([("label", vec![label.to_owned()])]);
    let d = client().await?;
    request(&policy::LIST, &format!("networks labelled {label}"), || {
        d.list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
    })
    .await
}

/// Every volume carrying `label`.
pub(crate) async fn list_volumes(label: &str) -> Result<Vec<Volume>> {
    let filters = HashMap::from([("label", vec![label.to_owned()])]);
    let d = client().await?;
    let listed = request(&policy::LIST, &format!("volumes labelled {label}"), || {
        d.list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
    })
    .await?;
    Ok(listed.volumes.unwrap_or_default())
}

/// Removes a volume; already gone counts as success.
pub(crate) async fn remove_volume(name: &str) -> Result<()> {
    let p = &policy::REMOVE_VOLUME;
    let d = client().await?;
    p.settle(
        request(p, name, || {
            d.remove_volume(name, None::<RemoveVolumeOptions>)
        })
        .await,
    )
}
