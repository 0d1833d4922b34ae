//! Tests of `client.rs`: keys, addresses, routing metadata both ways.

use super::*;

#[test]
fn route_requests_become_checked_metadata() {
    assert!(RouteRequest::default().is_empty());
    assert!(RouteRequest::default().metadata().unwrap().is_empty());
    let route = RouteRequest {
        route_id: Some("vip-7".into()),
        params: vec![
            parse_route_param("wareHouseId=2001").unwrap(),
            parse_route_param("q=a=b").unwrap(),
        ],
        routing_key: Some("user 1".into()),
    };
    let map = route.metadata().unwrap();
    assert_eq!(map.get(meta::ROUTE_ID).unwrap(), "vip-7");
    let params: Vec<_> = map.get_all(meta::ROUTE_PARAM).iter().collect();
    assert_eq!(params, ["wareHouseId=2001", "q=a=b"]);
    assert_eq!(map.get(meta::ROUTING_KEY).unwrap(), "user 1");

    for bad in ["novalue", "=x", ""] {
        assert!(
            parse_route_param(bad)
                .unwrap_err()
                .contains("is not key=value"),
            "{bad}"
        );
    }
    let e = RouteRequest {
        route_id: Some("vïp".into()),
        ..RouteRequest::default()
    }
    .metadata()
    .unwrap_err();
    assert_eq!(
        e,
        "--route-id \"vïp\": contains 'ï'; routing values travel as gRPC metadata and must be printable ASCII"
    );
    let e = RouteRequest {
        params: vec![("k".into(), "a\nb".into())],
        ..RouteRequest::default()
    }
    .metadata()
    .unwrap_err();
    assert!(e.starts_with("--route \"k=a\\nb\": contains '\\n'"), "{e}");
    let e = RouteRequest {
        routing_key: Some("x".repeat(MAX_ROUTE_VALUE_BYTES + 1)),
        ..RouteRequest::default()
    }
    .metadata()
    .unwrap_err();
    assert!(e.contains("over the server's limit of 256"), "{e}");
    let e = RouteRequest {
        params: vec![("k".into(), "v".into()); MAX_ROUTE_PARAMS + 1],
        ..RouteRequest::default()
    }
    .metadata()
    .unwrap_err();
    assert!(e.contains("at most 16 routing parameters"), "{e}");
}

#[test]
fn the_data_dirs_key_goes_only_to_this_machine() {
    for local in [
        "127.0.0.1:10500",
        "localhost:1",
        "[::1]:1",
        "http://127.0.0.2:1",
        "https://localhost:1",
    ] {
        assert!(is_local(local), "{local}");
    }
    for remote in [
        "10.0.0.1:10500",
        "example.com:1",
        "[2001:db8::1]:1",
        "https://faas.example:443",
    ] {
        assert!(!is_local(remote), "{remote}");
    }
    let dir = std::env::temp_dir().join(format!("faas-cli-key-{}", uuid::Uuid::new_v4()));
    let (lines, _) = faas_apiserver::store::keys::ensure_keys_file(&dir).unwrap();
    let key = find_key("127.0.0.1:1", None, Some(&dir)).unwrap();
    assert_eq!(key.as_deref(), Some(lines[0].key.as_str()));
    assert_eq!(find_key("10.1.1.1:1", None, Some(&dir)).unwrap(), None);
    let given = find_key("10.1.1.1:1", Some("mine"), Some(&dir)).unwrap();
    assert_eq!(given.as_deref(), Some("mine"));
    assert_eq!(
        find_key("127.0.0.1:1", None, Some(&dir.join("none"))).unwrap(),
        None
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(BearerKey::new(Some("ключ")).is_err());
    assert_eq!(
        format!("{:?}", BearerKey::new(Some("secret")).unwrap()),
        "BearerKey(..)"
    );
}

#[test]
fn the_routing_of_a_reply_is_read_back() {
    let mut map = MetadataMap::new();
    assert_eq!(RouteReply::from_metadata(&map), RouteReply::default());
    assert!(RouteReply::default().lines().is_empty());
    map.insert(meta::VERSION, "1".parse().unwrap());
    map.insert(meta::TARGET, "shop:1".parse().unwrap());
    map.insert(meta::FALLBACK, "shop:2; error".parse().unwrap());
    let reply = RouteReply::from_metadata(&map);
    assert_eq!(
        reply.fallback,
        Some(FallbackReply {
            meant_for: "shop:2".into(),
            reason: "error".into()
        })
    );
    assert_eq!(
        reply.lines(),
        [
            "version 1 | target shop:1",
            "fallback: served instead of shop:2 (error)"
        ]
    );
}
