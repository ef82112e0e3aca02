//! Host accesses (in bounds and not, raw and typed) and names and user data.

use super::*;

impl World {
    /// A typed access: a value or a slice of values at any offset, or the mapped bytes as
    /// values (which need the allocation's address aligned for them).
    pub(crate) fn typed_access(&mut self, i: usize, rng: &mut Rng) {
        let step = self.step;
        let l = &mut self.live[i];
        let size = l.alloc.size();
        let offset = match rng.below(4) {
            0 => size.saturating_sub(rng.below(16)),
            _ => rng.below(size.min(SHADOW)),
        };
        let fits = offset.checked_add(8).is_some_and(|end| end <= size);
        match rng.below(3) {
            0 => {
                let v = rng.next();
                let r = l.alloc.write_value(offset, v);
                match (&r, l.shadow.as_mut()) {
                    (Ok(()), Some(shadow)) => {
                        for (k, b) in v.to_ne_bytes().into_iter().enumerate() {
                            if let Some(x) = shadow.get_mut(offset as usize + k) {
                                *x = b;
                            }
                        }
                    }
                    (Ok(()), None) => panic!("step {step}: a value written to hidden memory"),
                    (Err(MemoryAccessError::OutOfBounds { .. }), _) => assert!(!fits),
                    (Err(MemoryAccessError::NotHostVisible { .. }), None) => {}
                    (Err(e), _) => panic!("step {step}: write_value at {offset}: {e:?}"),
                }
            }
            1 => {
                let r = l.alloc.read_value::<u64>(offset);
                match (&r, l.shadow.as_ref()) {
                    (Ok(v), Some(shadow)) => {
                        assert!(fits);
                        for (k, b) in v.to_ne_bytes().into_iter().enumerate() {
                            if let Some(x) = shadow.get(offset as usize + k) {
                                assert_eq!(*x, b, "step {step}: read_value at {offset}");
                            }
                        }
                    }
                    (Ok(_), None) => panic!("step {step}: a value read from hidden memory"),
                    (Err(MemoryAccessError::OutOfBounds { .. }), _) => assert!(!fits),
                    (Err(MemoryAccessError::NotHostVisible { .. }), None) => {}
                    (Err(e), _) => panic!("step {step}: read_value at {offset}: {e:?}"),
                }
            }
            _ => {
                let address = l.alloc.mapped_ptr().map(|p| p.as_ptr() as usize);
                let r = l.alloc.mapped_slice_of::<u32>();
                match (r, address, l.shadow.as_ref()) {
                    (Ok(values), Some(a), Some(shadow)) => {
                        assert_eq!(a % 4, 0);
                        assert_eq!(values.len() as u64, size / 4);
                        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
                        let n = bytes.len().min(shadow.len()) & !3;
                        // Coherent or not, nothing else wrote: the mapping holds what was
                        // written.
                        assert!(bytes[..n] == shadow[..n], "step {step}: mapped_slice_of");
                    }
                    (Err(MemoryAccessError::Misaligned { .. }), Some(a), Some(_)) => {
                        assert_ne!(a % 4, 0)
                    }
                    (Err(MemoryAccessError::NotHostVisible { .. }), None, None) => {}
                    (r, a, _) => panic!("step {step}: mapped_slice_of at {a:?}: {r:?}"),
                }
            }
        }
        self.count("typed access");
    }

    /// A write, read, flush or invalidate at a random offset and length, in bounds or not.
    pub(crate) fn access(&mut self, rng: &mut Rng) {
        let Some(i) = self.pick_live(rng) else { return };
        if rng.below(3) == 0 {
            return self.typed_access(i, rng);
        }
        let l = &mut self.live[i];
        let size = l.alloc.size();
        let offset = match rng.below(6) {
            0 => size,
            1 => u64::MAX - rng.below(8),
            2 => size.saturating_sub(rng.below(64)),
            _ => rng.below(size.min(SHADOW)),
        };
        let len = match rng.below(6) {
            0 => 0,
            1 => u64::MAX,
            2 => size + 1 - size.min(offset).min(size),
            _ => rng.below(2 * KIB),
        };
        let in_bounds = offset.checked_add(len).is_some_and(|end| end <= size);
        let visible = l.shadow.is_some();
        let kind = rng.below(4);
        let result = match kind {
            0 | 1 if len > 64 * KIB => return,
            0 => {
                let data = support::pattern(rng.next(), len as usize);
                let r = l.alloc.write(offset, &data);
                if r.is_ok() {
                    let shadow = l.shadow.as_mut().unwrap();
                    let end = (offset + len).min(shadow.len() as u64);
                    if offset < end {
                        shadow[offset as usize..end as usize]
                            .copy_from_slice(&data[..(end - offset) as usize]);
                    }
                }
                r
            }
            1 => {
                let mut out = vec![0; len as usize];
                let r = l.alloc.read(offset, &mut out);
                if r.is_ok() {
                    let shadow = l.shadow.as_ref().unwrap();
                    let end = (offset + len).min(shadow.len() as u64);
                    if offset < end {
                        assert!(
                            out[..(end - offset) as usize] == shadow[offset as usize..end as usize],
                            "step {}: read {offset}+{len} differs from what was written",
                            self.step
                        );
                    }
                }
                r
            }
            2 => l.alloc.flush(offset, len),
            _ => l.alloc.invalidate(offset, len),
        };
        match result {
            Ok(()) => assert!(
                in_bounds && (visible || kind >= 2),
                "step {}: access {kind} {offset}+{len} of {size} bytes (visible {visible})",
                self.step
            ),
            Err(MemoryAccessError::OutOfBounds { .. }) => assert!(!in_bounds),
            Err(MemoryAccessError::NotHostVisible { .. }) => {
                assert!(!visible && kind < 2 && in_bounds)
            }
            Err(e) => panic!("step {}: access {kind} {offset}+{len}: {e:?}", self.step),
        }
        self.count(if in_bounds {
            "access"
        } else {
            "access out of bounds"
        });
    }

    pub(crate) fn set_meta(&mut self, rng: &mut Rng) {
        let Some(i) = self.pick_live(rng) else { return };
        let l = &mut self.live[i];
        if rng.below(2) == 0 {
            let name: Option<Arc<str>> =
                (rng.below(3) != 0).then(|| format!("n{}", rng.below(99)).into());
            l.alloc.set_name(name.clone());
            l.name = name;
        } else {
            let user = (rng.below(3) != 0).then(|| rng.next());
            l.alloc
                .set_user_data(user.map(|u| Arc::new(u) as Arc<dyn UserData>));
            l.user = user;
        }
        assert_eq!(l.alloc.name(), l.name.as_deref());
        assert_eq!(l.alloc.user_data_as::<u64>().copied(), l.user);
        self.count("set meta");
    }
}
