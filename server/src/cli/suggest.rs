//! "Did you mean …" for a misspelled feature, view, service or field name: the known name
//! nearest by edit distance, when it is near enough to be a typo.

use quiver_engine::Registry;

use crate::proto::quiver::v1 as pb;

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`, ignoring case.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    // Three rows of the dynamic programme: two back (for swaps), the last and this one.
    let mut before: Vec<usize> = Vec::new();
    let mut last: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut last, row);
    }
    last[b.len()]
}

/// The candidate nearest to `name`, if it is within a third of the name's length (at least
/// one edit) and is not `name` itself.
pub(super) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `; did you mean "x"?` for the candidate nearest to `name`, or nothing.
pub(super) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    closest(name, candidates).map_or(String::new(), |c| format!("; did you mean {c:?}?"))
}

/// The names a registry declares, as the hints need them.
#[derive(Debug, Default)]
pub(super) struct Names<'a> {
    views: Vec<(&'a str, Vec<&'a str>)>,
    services: Vec<&'a str>,
}

impl<'a> Names<'a> {
    /// The names in a server's GetRegistry answer.
    pub(super) fn of_proto(reg: &'a pb::GetRegistryResponse) -> Self {
        Self {
            views: reg
                .views
                .iter()
                .map(|v| {
                    let features = v.features.iter().map(|f| f.name.as_str()).collect();
                    (v.name.as_str(), features)
                })
                .collect(),
            services: reg
                .feature_services
                .iter()
                .map(|s| s.name.as_str())
                .collect(),
        }
    }

    /// The names in a registry file.
    pub(super) fn of_registry(reg: &'a Registry) -> Self {
        Self {
            views: reg
                .views()
                .iter()
                .map(|v| {
                    let features = v.features.iter().map(|f| f.name.as_str()).collect();
                    (v.name.as_str(), features)
                })
                .collect(),
            services: reg.services().iter().map(|s| s.name.as_str()).collect(),
        }
    }

    fn view(&self, name: &str) -> Option<&[&'a str]> {
        self.views
            .iter()
            .find(|(v, _)| *v == name)
            .map(|(_, f)| f.as_slice())
    }

    /// A hint for a view name the registry does not have, or nothing.
    pub(super) fn view_hint(&self, view: &str) -> String {
        if self.view(view).is_some() {
            return String::new();
        }
        did_you_mean(view, self.views.iter().map(|(v, _)| *v))
    }

    /// A hint for a feature service name the registry does not have, or nothing.
    pub(super) fn service_hint(&self, service: &str) -> String {
        if self.services.contains(&service) {
            return String::new();
        }
        did_you_mean(service, self.services.iter().copied())
    }

    /// A hint for the first of `refs` ("view:feature") that names a view or feature the
    /// registry does not have and has a near one: the corrected reference.
    pub(super) fn refs_hint(&self, refs: &[String]) -> String {
        for r in refs {
            let Some((view, feature)) = r.split_once(':') else {
                continue;
            };
            let (view, features) = match self.view(view) {
                Some(features) => (view, features),
                None => match closest(view, self.views.iter().map(|(v, _)| *v)) {
                    Some(near) => (near, self.view(near).unwrap_or_default()),
                    None => continue,
                },
            };
            let feature = if features.contains(&feature) {
                feature
            } else {
                match closest(feature, features.iter().copied()) {
                    Some(near) => near,
                    None => continue,
                }
            };
            let fixed = format!("{view}:{feature}");
            if &fixed != r {
                return format!("; did you mean {fixed:?}?");
            }
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn distance_counts_edits_and_swaps() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("user_stats", "user_stat"), 1);
        assert_eq!(edit_distance("country", "cuontry"), 1, "a swap is one edit");
        assert_eq!(edit_distance("Country", "country"), 0, "case is ignored");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_only_near_names() {
        let names = ["txn_count_7d", "txn_count_30d", "country"];
        assert_eq!(closest("txn_count_7", names), Some("txn_count_7d"));
        assert_eq!(closest("contry", names), Some("country"));
        assert_eq!(closest("zzz", names), None);
        assert_eq!(
            closest("country", names),
            None,
            "an exact name needs no hint"
        );
        assert_eq!(did_you_mean("contry", names), "; did you mean \"country\"?");
        assert_eq!(did_you_mean("balance", names), "");
    }

    #[test]
    fn corrects_references_view_and_feature() {
        let reg = Registry::from_toml(crate::testing::REGISTRY).unwrap();
        let names = Names::of_registry(&reg);
        let refs = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names.refs_hint(&refs(&["user_stats:country", "user_stats:txn_count7d"])),
            "; did you mean \"user_stats:txn_count_7d\"?"
        );
        assert_eq!(
            names.refs_hint(&refs(&["user_stat:country"])),
            "; did you mean \"user_stats:country\"?"
        );
        assert_eq!(names.refs_hint(&refs(&["user_stats:country"])), "");
        assert_eq!(names.refs_hint(&refs(&["orders:total"])), "");
        assert_eq!(
            names.view_hint("usr_stats"),
            "; did you mean \"user_stats\"?"
        );
        assert_eq!(names.view_hint("user_stats"), "");
    }

    #[test]
    fn reads_the_same_names_from_the_server() {
        let reg = Registry::from_toml(crate::testing::REGISTRY).unwrap();
        let proto = crate::convert::registry_to_proto(&reg, 1);
        let names = Names::of_proto(&proto);
        assert_eq!(
            names.refs_hint(&["user_stats:contry".to_owned()]),
            "; did you mean \"user_stats:country\"?"
        );
        assert_eq!(names.service_hint("fraud"), "");
    }
}
