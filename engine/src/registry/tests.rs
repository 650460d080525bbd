use super::*;

fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/registry.toml"
    ))
    .expect("example registry")
}

fn invalid(text: &str) -> Vec<String> {
    match Registry::from_toml(text) {
        Err(RegistryError::Invalid(p)) => p,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

const BASE: &str = include_str!("../../testdata/scalar-view.toml");

#[test]
fn parses_the_shipped_example() {
    let r = Registry::from_toml(&example()).unwrap();
    assert_eq!(r.project(), "demo");
    let v = r.view("user_stats").unwrap();
    assert_eq!(v.features.len(), 20);
    assert_eq!(v.ttl_secs, 86_400);
    assert_eq!(v.feature_ttl_secs(0), 7_200);
    assert_eq!(v.feature_ttl_secs(1), 86_400);
    assert_eq!(
        r.view("user_embedding").unwrap().features[0].ty,
        ValueType::Vector { dim: 64 }
    );
    assert_eq!(r.entity("user_merchant").unwrap().join_keys.len(), 2);
    assert_eq!(r.service("fraud_v1").unwrap().features.len(), 7);
    let fr = r.resolve("user_stats:country").unwrap();
    assert_eq!(r.views()[fr.view].features[fr.feature].name, "country");
}

#[test]
fn unknown_type_names_view_feature_and_line() {
    let text = BASE.replace("type = \"float32\"", "type = \"flaot32\"");
    let p = invalid(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("line 15"), "{}", p[0]);
    assert!(p[0].contains("\"v\"") && p[0].contains("\"b\""), "{}", p[0]);
    assert!(p[0].contains("unknown type \"flaot32\""), "{}", p[0]);
}

#[test]
fn bad_ttls_are_reported_per_field() {
    let text = BASE
        .replace("ttl = \"1d\"", "ttl = -5")
        .replace("ttl = \"90m\"", "ttl = \"1y\"");
    let p = invalid(&text);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("feature view \"v\" field \"ttl\"") && p[0].contains("negative"));
    assert!(p[1].contains("feature \"b\" field \"ttl\"") && p[1].contains("unknown unit"));
}

#[test]
fn duplicates_and_dangling_entity_are_reported() {
    let text = format!(
        "{BASE}\n[[feature_view]]\nname = \"v\"\nentity = \"merchant\"\n  \
         [[feature_view.feature]]\n  name = \"x\"\n  type = \"bool\"\n  \
         [[feature_view.feature]]\n  name = \"x\"\n  type = \"bool\"\n"
    );
    let p = invalid(&text);
    assert!(
        p.iter().any(|m| m.contains("duplicate feature view \"v\"")),
        "{p:?}"
    );
    assert!(p
        .iter()
        .any(|m| m.contains("\"merchant\", which is not a declared entity")));
    assert!(p.iter().any(|m| m.contains("duplicate feature \"x\"")));
}

#[test]
fn service_with_unknown_reference_is_refused() {
    let text =
        format!("{BASE}\n[[feature_service]]\nname = \"s\"\nfeatures = [\"v:a\", \"v:zz\"]\n");
    let p = invalid(&text);
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("\"v:zz\""));
}

#[test]
fn syntax_errors_and_unknown_fields_are_clear() {
    assert!(matches!(
        Registry::from_toml("[[entity]\nname="),
        Err(RegistryError::Syntax(_))
    ));
    let e = Registry::from_toml(&BASE.replace("ttl = \"1d\"", "tll = \"1d\"")).unwrap_err();
    assert!(e.to_string().contains("tll"), "{e}");
}

#[test]
fn resolve_explains_what_is_unknown() {
    let r = Registry::from_toml(BASE).unwrap();
    assert!(r
        .resolve("v")
        .unwrap_err()
        .to_string()
        .contains("view:feature"));
    assert!(r
        .resolve("w:a")
        .unwrap_err()
        .to_string()
        .contains("no feature view"));
    assert!(r
        .resolve("v:c")
        .unwrap_err()
        .to_string()
        .contains("no feature named"));
}

#[test]
fn evolve_allows_additions_and_keeps_old_order() {
    let old = Registry::from_toml(BASE).unwrap();
    // New feature first in the file, old ones swapped: stored order must not change.
    let next_text = BASE.replace(
        "  [[feature_view.feature]]\n  name = \"a\"",
        "  [[feature_view.feature]]\n  name = \"new\"\n  type = \"string\"\n  \
         [[feature_view.feature]]\n  name = \"a\"",
    );
    let next = Registry::from_toml(&next_text).unwrap();
    assert_eq!(next.view("v").unwrap().features[0].name, "new");
    let merged = old.evolve(next).unwrap();
    let names: Vec<_> = merged
        .view("v")
        .unwrap()
        .features
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "new"]);
}

#[test]
fn evolve_refuses_type_change_and_removal() {
    let old = Registry::from_toml(BASE).unwrap();
    let changed =
        Registry::from_toml(&BASE.replace("type = \"float32\"", "type = \"float64\"")).unwrap();
    let e = old.evolve(changed).unwrap_err().to_string();
    assert!(
        e.contains("feature \"b\": type changed from float32 to float64"),
        "{e}"
    );
    let removed = Registry::from_toml(&BASE.replace(
        "  [[feature_view.feature]]\n  name = \"a\"\n  type = \"int64\"\n",
        "",
    ))
    .unwrap();
    let e = old.evolve(removed).unwrap_err().to_string();
    assert!(e.contains("feature \"a\" was removed"), "{e}");
}

#[test]
fn canonical_toml_round_trips() {
    let r = Registry::from_toml(&example()).unwrap();
    let again = Registry::from_toml(&r.to_toml()).unwrap();
    assert_eq!(again, r);
    // Evolved order survives the round trip too.
    let old = Registry::from_toml(BASE).unwrap();
    let next = Registry::from_toml(&BASE.replace(
        "  [[feature_view.feature]]\n  name = \"a\"",
        "  [[feature_view.feature]]\n  name = \"z\"\n  type = \"bytes\"\n  [[feature_view.feature]]\n  name = \"a\"",
    ))
    .unwrap();
    let merged = old.evolve(next).unwrap();
    assert_eq!(Registry::from_toml(&merged.to_toml()).unwrap(), merged);
}
