//! host.docker.internal, extra hosts and published ports.

mod support;

use std::time::Duration;

use dockfix::{ContainerSpec, Error, Result, WaitFor};
use support::IMAGE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn container_reaches_a_host_listener_via_host_docker_internal() -> Result<()> {
    // The container reaches the host through the bridge gateway, so the
    // listener binds to all interfaces; it answers one connection and stops.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut sock, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("no connection from the container")
            .unwrap();
        sock.write_all(b"pong from host\n").await.unwrap();
    });
    let c = ContainerSpec::new(IMAGE)
        .cmd(["sleep", "300"])
        .start()
        .await?;
    let out = c
        .exec_ok([
            "sh",
            "-c",
            &format!("nc -w 5 host.docker.internal {port} </dev/null"),
        ])
        .timeout(Duration::from_secs(15))
        .await?;
    assert_eq!(out.stdout, "pong from host\n");
    server.await.unwrap();
    Ok(())
}

#[tokio::test]
async fn host_gateway_can_be_turned_off_and_extra_hosts_added() -> Result<()> {
    let c = support::sleeper()
        .host_gateway(false)
        .extra_host("db.test", "10.1.2.3")
        .start()
        .await?;
    let hosts = c.exec_ok(["cat", "/etc/hosts"]).await?.stdout;
    assert!(!hosts.contains("host.docker.internal"), "{hosts}");
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with("10.1.2.3") && l.contains("db.test")),
        "{hosts}"
    );
    Ok(())
}

#[tokio::test]
async fn published_port_is_reachable_from_the_host() -> Result<()> {
    let c = ContainerSpec::new(IMAGE)
        .cmd(["httpd", "-f", "-p", "8080", "-h", "/fixtures"])
        .bind_ro("./tests/fixtures", "/fixtures")
        .expose(8080)
        .wait_for(WaitFor::port(8080))
        .start()
        .await?;
    assert_eq!(c.host(), "127.0.0.1");
    let port = c.host_port(8080)?;
    assert_ne!(port, 8080);
    let mut sock = tokio::net::TcpStream::connect((c.host().as_str(), port))
        .await
        .unwrap();
    sock.write_all(b"GET /a.txt HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    sock.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.") && response.contains(" 200 "),
        "{response}"
    );
    assert!(response.ends_with("hello from the host\n"), "{response}");
    Ok(())
}

#[tokio::test]
async fn host_port_of_an_unexposed_port_is_a_clear_error() -> Result<()> {
    let c = support::sleeper().start().await?;
    let err = c.host_port(5432).unwrap_err();
    assert!(matches!(err, Error::PortNotExposed { port: 5432, .. }));
    assert!(err.to_string().contains("expose(5432)"), "{err}");
    Ok(())
}

#[tokio::test]
async fn containers_on_a_network_reach_each_other_by_alias_and_everything_goes_in_any_order()
-> Result<()> {
    let net = dockfix::Network::new().await?;
    let labels = support::raw_docker()
        .await
        .inspect_network(
            net.id(),
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap()
        .labels
        .unwrap_or_default();
    assert_eq!(
        labels.get("dockfix.managed").map(String::as_str),
        Some("true")
    );
    let web = ContainerSpec::new(IMAGE)
        .cmd([
            "sh",
            "-c",
            "echo hello from web > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
        ])
        .network(&net, ["web", "www.test"])
        .start()
        .await?;
    let client = ContainerSpec::new(IMAGE)
        .cmd(["sleep", "300"])
        .network(&net, ["client"])
        .start()
        .await?;
    for host in ["web", "www.test"] {
        let out = client
            .exec_ok(["wget", "-qO-", &format!("http://{host}:8080/index.html")])
            .timeout(Duration::from_secs(10))
            .await?;
        assert_eq!(out.stdout, "hello from web\n");
    }
    // The network guard goes first: its removal waits for the containers.
    let (net_id, ids) = (
        net.id().to_owned(),
        [web.id().to_owned(), client.id().to_owned()],
    );
    drop(net);
    drop((web, client));
    assert_eq!(dockfix::wait_for_removals(Duration::from_secs(30)).await, 0);
    for id in &ids {
        assert!(!support::container_exists(id).await);
    }
    let gone = support::raw_docker()
        .await
        .inspect_network(
            &net_id,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await;
    assert!(gone.is_err(), "the network is still there");
    Ok(())
}

#[tokio::test]
async fn a_bad_alias_is_refused() {
    let net = dockfix::Network::new().await.unwrap();
    let err = ContainerSpec::new(IMAGE)
        .network(&net, ["not an alias"])
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidSpec {
                field: "network",
                ..
            }
        ),
        "{err}"
    );
    net.remove().await.unwrap();
}

#[tokio::test]
async fn a_running_container_connected_later_is_reached_by_its_alias() -> Result<()> {
    // Started on Docker's default bridge, before the network exists.
    let web = ContainerSpec::new(IMAGE)
        .cmd([
            "sh",
            "-c",
            "echo late but there > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
        ])
        .start()
        .await?;
    let net = dockfix::Network::new().await?;
    net.connect(&web, ["late"]).await?;
    let client = ContainerSpec::new(IMAGE)
        .cmd(["sleep", "300"])
        .network(&net, ["client"])
        .start()
        .await?;
    let out = client
        .exec_ok(["wget", "-qO-", "http://late:8080/index.html"])
        .timeout(Duration::from_secs(10))
        .await?;
    assert_eq!(out.stdout, "late but there\n");
    // Connecting it again is the daemon's refusal, with its words.
    let err = net.connect(&web, ["late"]).await.unwrap_err();
    assert!(matches!(err, Error::Docker { .. }), "{err}");
    let err = net.connect(&web, ["not an alias"]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidSpec {
                field: "network",
                ..
            }
        ),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_kept_network_outlives_its_guard() -> Result<()> {
    let net = dockfix::Network::new().await?;
    let id = net.keep();
    dockfix::wait_for_removals(Duration::from_secs(10)).await;
    let docker = support::raw_docker().await;
    let opts = None::<bollard::query_parameters::InspectNetworkOptions>;
    let kept = docker.inspect_network(&id, opts.clone()).await;
    assert!(kept.is_ok(), "the kept network is gone: {kept:?}");
    docker.remove_network(&id).await.unwrap();
    Ok(())
}

#[test]
fn dockfix_keep_leaves_networks_with_their_containers_and_exits_at_once() {
    let started = std::time::Instant::now();
    let child = support::run_child!(
        child_keeps_a_network_and_its_container,
        &[("DOCKFIX_KEEP", "1")]
    );
    let took = started.elapsed();
    child.assert_success();
    let (net, container) = (
        child.value("NETWORK").to_owned(),
        child.value("CONTAINER").to_owned(),
    );
    support::block_on(async {
        let docker = support::raw_docker().await;
        let opts = None::<bollard::query_parameters::InspectNetworkOptions>;
        let network_kept = docker.inspect_network(&net, opts).await.is_ok();
        let container_kept = support::container_exists(&container).await;
        support::force_remove(&container).await;
        let _ = docker.remove_network(&net).await;
        assert!(
            network_kept && container_kept,
            "network kept: {network_kept}, container kept: {container_kept}\n{child}"
        );
    });
    // The exit hook has nothing to wait for: no removal loops on a network
    // whose containers were kept.
    assert!(
        took < Duration::from_secs(10),
        "the child took {took:?}\n{child}"
    );
}

#[tokio::test]
#[ignore = "run as a child process by dockfix_keep_leaves_networks_with_their_containers_and_exits_at_once"]
async fn child_keeps_a_network_and_its_container() -> Result<()> {
    if !support::is_child() {
        return Ok(());
    }
    let net = dockfix::Network::new().await?;
    let c = ContainerSpec::new(IMAGE)
        .cmd(["sleep", "300"])
        .network(&net, ["kept"])
        .start()
        .await?;
    println!("NETWORK={}\nCONTAINER={}", net.id(), c.id());
    drop(net);
    drop(c);
    Ok(())
}
