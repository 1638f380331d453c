//! Arrays from files: NumPy `.npy` (v1–v3, little-endian f4/f8/i4/i8/u1, C or Fortran order)
//! and `.safetensors` (F32/F64/I32/I64/U8). A path `file.safetensors:NAME` picks one tensor;
//! without `:NAME` the file must hold exactly one.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A dense array read from a file, as f32, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Read an array from `spec` (`path.npy`, `path.safetensors` or `path.safetensors:NAME`).
pub fn read_array(spec: &str) -> Result<Array> {
    let (path, name) = split_spec(spec);
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::data(
            &path,
            format!("cannot be read: {e}"),
            "check data.x / data.y in the config (paths are relative to the current directory)",
        )
    })?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => parse_npy(&bytes)
            .map_err(|p| Error::data(&path, p, "write it with numpy.save(path, array.astype('float32'))")),
        Some("safetensors") => parse_safetensors(&bytes, name.as_deref())
            .map_err(|p| Error::data(&path, p, "write it with safetensors.numpy.save_file({'X': X}, path)")),
        _ => Err(Error::data(
            &path,
            "unsupported file type",
            "use a .npy or .safetensors file (file.safetensors:NAME picks a tensor)",
        )),
    }
}

pub(crate) fn split_spec(spec: &str) -> (PathBuf, Option<String>) {
    if let Some((p, n)) = spec.rsplit_once(':')
        && p.ends_with(".safetensors")
    {
        return (PathBuf::from(p), Some(n.to_string()));
    }
    (PathBuf::from(spec), None)
}

fn parse_npy(bytes: &[u8]) -> std::result::Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic bytes)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated header")
        .and_then(|h| std::str::from_utf8(h).map_err(|_| "header is not text"))?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let fortran = fortran.starts_with("True");
    let shape_text = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let shape: Vec<usize> = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape entry '{s}'")))
        .collect::<std::result::Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + header_len..];
    let mut data = decode(descr, body, count)?;
    if fortran && shape.len() == 2 {
        data = crate::array::transpose(&data, shape[1], shape[0]);
    } else if fortran && shape.len() > 2 {
        return Err("Fortran-ordered arrays of more than 2 dimensions are not supported".into());
    }
    Ok(Array { shape, data })
}

/// The text after `'key':` in a Python dict literal, up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header[at..].split_once(':')?.1.trim_start();
    let mut depth = 0;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    Some(rest.trim())
}

fn decode(descr: &str, body: &[u8], count: usize) -> std::result::Result<Vec<f32>, String> {
    let width = match descr {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "|u1" | "<u1" | "|i1" => 1,
        d => return Err(format!("unsupported dtype '{d}' (use float32/float64/int32/int64/uint8, little-endian)")),
    };
    if body.len() < count * width {
        return Err(format!("truncated data: {} bytes for {count} elements of {width} bytes", body.len()));
    }
    let body = &body[..count * width];
    Ok(match descr {
        "<f4" => body.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        "<f8" => body.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32).collect(),
        "<i4" => body.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32).collect(),
        "<i8" => body.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32).collect(),
        "|i1" => body.iter().map(|&b| b as i8 as f32).collect(),
        _ => body.iter().map(|&b| b as f32).collect(),
    })
}

fn parse_safetensors(bytes: &[u8], name: Option<&str>) -> std::result::Result<Array, String> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not a valid safetensors file: {e}"))?;
    let names = st.names();
    let name = match name {
        Some(n) => n.to_string(),
        None if names.len() == 1 => names[0].to_string(),
        None => {
            let mut list: Vec<&str> = names.to_vec();
            list.sort();
            return Err(format!(
                "holds {} tensors ({}); name one as file.safetensors:NAME",
                list.len(),
                list.join(", ")
            ));
        }
    };
    let view = st.tensor(&name).map_err(|_| format!("has no tensor named '{name}'"))?;
    let raw = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F64 => decode("<f8", raw, raw.len() / 8)?,
        Dtype::I32 => decode("<i4", raw, raw.len() / 4)?,
        Dtype::I64 => decode("<i8", raw, raw.len() / 8)?,
        Dtype::U8 => decode("|u1", raw, raw.len())?,
        d => return Err(format!("tensor '{name}' has unsupported dtype {d:?}")),
    };
    Ok(Array { shape: view.shape().to_vec(), data })
}

/// Write a C-ordered little-endian float32 `.npy` file (v1.0), for tests and exports.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    crate::checkpoint::atomic_write(path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        write_npy(&p, &[2, 3], &data).unwrap();
        let a = read_array(p.to_str().unwrap()).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, data);
        // Truncated file.
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let err = read_array(p.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn fortran_order_is_transposed() {
        let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        // Column-major storage of [[0, 1, 2], [3, 4, 5]].
        for v in [0.0f64, 3.0, 1.0, 4.0, 2.0, 5.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let a = parse_npy(&bytes).unwrap();
        assert_eq!(a.data, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }
}
