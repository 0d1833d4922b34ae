//! Tests of `client.rs`: where a key comes from, which addresses are this machine (the
//! client's own tests, keys and routing metadata, are in `faas_e2e::live::client`).

use super::*;

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
}
