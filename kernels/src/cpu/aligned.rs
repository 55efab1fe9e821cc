//! [`AlignedVec`]: a fixed-length buffer of plain numbers starting on a 64-byte (cache
//! line) boundary, so full-width AVX-512 loads of panels packed at multiples of 16
//! floats never straddle two lines (a `Vec<f32>` is only 16-byte aligned for large
//! allocations). Used for packed weights; activations may use it too.

/// One cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

// SAFETY: a Line is 64 plain bytes, no padding, valid for any bit pattern.
unsafe impl bytemuck::Zeroable for Line {}
// SAFETY: as above; Copy and 'static.
unsafe impl bytemuck::Pod for Line {}

/// `len` values of `T`, zero-initialised, starting on a 64-byte boundary.
#[derive(Clone)]
pub struct AlignedVec<T: bytemuck::Pod> {
    lines: Vec<Line>,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod> AlignedVec<T> {
    /// `len` zeros.
    pub fn zeroed(len: usize) -> AlignedVec<T> {
        let bytes = len * std::mem::size_of::<T>();
        AlignedVec {
            lines: vec![Line([0; 64]); bytes.div_ceil(64)],
            len,
            _t: std::marker::PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[T] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
    }
}

impl<T: bytemuck::Pod> std::ops::Deref for AlignedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: bytemuck::Pod> std::ops::DerefMut for AlignedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: bytemuck::Pod + std::fmt::Debug> std::fmt::Debug for AlignedVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedVec(len {})", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_cache_line_and_holds_len_zeros() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let mut v = AlignedVec::<f32>::zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0));
            if len > 0 {
                assert_eq!(v.as_ptr() as usize % 64, 0);
                v[len - 1] = 1.0;
                assert_eq!(v.as_slice()[len - 1], 1.0);
            }
        }
    }
}
