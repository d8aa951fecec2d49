//! Per-tenant state for the few tenants a stage sees, found by the shared name first.

use std::sync::Arc;

use omnistitch_model::Tenant;

/// Up to this many tenants are found by comparing the shared name pointer first (events of
/// one tenant share one name); more are found by binary search.
const SCAN: usize = 8;

/// A map from tenant to state, in tenant order (as a `BTreeMap` iterates).
#[derive(Debug)]
pub(crate) struct TenantMap<V> {
    entries: Vec<(Tenant, V)>,
}

impl<V> Default for TenantMap<V> {
    fn default() -> Self {
        TenantMap { entries: Vec::new() }
    }
}

impl<V> TenantMap<V> {
    fn find(&self, tenant: &Tenant) -> Result<usize, usize> {
        if self.entries.len() <= SCAN {
            if let Some(i) = self.entries.iter().position(|(t, _)| Arc::ptr_eq(&t.0, &tenant.0)) {
                return Ok(i);
            }
        }
        self.entries.binary_search_by(|(t, _)| t.cmp(tenant))
    }

    /// The state of `tenant`.
    pub(crate) fn get(&self, tenant: &Tenant) -> Option<&V> {
        self.find(tenant).ok().map(|i| &self.entries[i].1)
    }

    /// The state of `tenant`, mutable.
    pub(crate) fn get_mut(&mut self, tenant: &Tenant) -> Option<&mut V> {
        self.find(tenant).ok().map(|i| &mut self.entries[i].1)
    }

    /// The state of `tenant`, made by `make` on first sight.
    pub(crate) fn get_or_insert_with(&mut self, tenant: &Tenant, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(tenant) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (tenant.clone(), make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Tenants, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Tenant> {
        self.entries.iter().map(|(t, _)| t)
    }

    /// Tenants and their states, in tenant order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Tenant, &V)> {
        self.entries.iter().map(|(t, v)| (t, v))
    }

    /// Tenants and their states, mutable, in tenant order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&Tenant, &mut V)> {
        self.entries.iter_mut().map(|(t, v)| (&*t, v))
    }

    /// States, in tenant order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

/// Written as its (tenant, state) pairs, in tenant order.
impl<V: serde::Serialize> serde::Serialize for TenantMap<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

/// Read back; pairs out of tenant order (which the search relies on) are refused.
impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for TenantMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<(Tenant, V)>::deserialize(d)?;
        if entries.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(serde::de::Error::custom("tenants out of order"));
        }
        Ok(TenantMap { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tenants_by_name_whether_shared_or_not() {
        let mut m = TenantMap::default();
        for name in ["b", "a", "c"] {
            *m.get_or_insert_with(&Tenant::new(name), || 0) += 1;
        }
        *m.get_or_insert_with(&Tenant::new("a"), || 0) += 1;
        assert_eq!(m.keys().map(Tenant::as_str).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(m.get(&Tenant::new("a")), Some(&2));
        assert_eq!(m.get(&Tenant::new("z")), None);
        let many: Vec<Tenant> = (0..20).map(|i| Tenant::new(&format!("t{i:02}"))).collect();
        for t in &many {
            m.get_or_insert_with(t, || 7);
        }
        assert_eq!(m.get(&Tenant::new("t13")), Some(&7));
        assert_eq!(m.values().count(), 23);
    }
}
