//! The data formats `--data` reads besides IDX (image folders, CIFAR-10 binary, NumPy arrays),
//! on small sets the tests write: shapes, channel order, labels and preparation; and every kind
//! of bad data ends in an error naming the file.

use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};
use npyz::WriterBuilder;
use pare::data::{load, Dataset, Format, Prep};

fn gray(path: &Path, w: u32, h: u32, v: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_pixel(w, h, Luma([v])).save(path).unwrap();
}

fn rgb(path: &Path, w: u32, h: u32, px: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb(px)).save(path).unwrap();
}

fn err(path: &Path, prep: &Prep) -> String {
    load(path, prep).map(drop).unwrap_err().to_string()
}

#[test]
fn image_folder_with_splits() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    gray(&r.join("train/cat/a.png"), 8, 6, 255);
    gray(&r.join("train/cat/b.png"), 8, 6, 0);
    rgb(&r.join("train/dog/c.jpg"), 8, 6, [255, 0, 0]);
    std::fs::write(r.join("train/dog/notes.txt"), "skipped, as torchvision skips it").unwrap();
    gray(&r.join("test/dog/d.png"), 8, 6, 51);
    assert_eq!(pare::data::source::detect(r).unwrap(), Format::ImageFolder);
    let s = load(r, &Prep::default()).unwrap();
    // One color image makes the set RGB; classes are the sorted folder names.
    assert_eq!(
        (s.train.sample_shape(), s.train.num_classes()),
        (&[3, 6, 8][..], 2)
    );
    assert_eq!((s.train.len(), s.test.len()), (3, 1));
    assert_eq!(
        (0..3).map(|i| s.train.label(i)).collect::<Vec<_>>(),
        vec![0, 0, 1]
    );
    let red = s.train.image(2);
    assert!(
        red[0] > 0.9 && red[48] < 0.1 && red[96] < 0.1,
        "channel planes R, G, B"
    );
    assert!((s.test.image(0)[0] - 0.2).abs() < 1e-6);

    let p = Prep {
        resize: Some([4, 4]),
        crop: Some([2, 2]),
    };
    assert_eq!(load(r, &p).unwrap().train.sample_shape(), &[3, 2, 2]);
}

#[test]
fn image_folder_without_splits_holds_out_every_tenth() {
    let d = tempfile::tempdir().unwrap();
    for class in ["a", "b"] {
        for k in 0..10 {
            gray(&d.path().join(format!("{class}/{k:02}.png")), 4, 4, k * 20);
        }
    }
    let s = load(d.path(), &Prep::default()).unwrap();
    assert_eq!(
        (s.train.len(), s.test.len(), s.train.sample_shape()),
        (18, 2, &[1, 4, 4][..])
    );
}

#[test]
fn bad_image_folders_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    gray(&r.join("train/a/1.png"), 8, 8, 1);
    gray(&r.join("train/b/2.png"), 6, 8, 1);
    gray(&r.join("test/a/3.png"), 8, 8, 1);
    let e = err(r, &Prep::default());
    assert!(
        e.contains("train/b/2.png: image is 8x6") && e.contains("--resize"),
        "{e}"
    );
    assert!(load(
        r,
        &Prep {
            resize: Some([8, 8]),
            crop: None
        }
    )
    .is_ok());

    std::fs::write(r.join("train/b/broken.png"), b"not a png").unwrap();
    let e = err(
        r,
        &Prep {
            resize: Some([8, 8]),
            crop: None,
        },
    );
    assert!(e.contains("train/b/broken.png: unreadable image"), "{e}");
    std::fs::remove_file(r.join("train/b/broken.png")).unwrap();

    std::fs::create_dir_all(r.join("train/c")).unwrap();
    let e = err(
        r,
        &Prep {
            resize: Some([8, 8]),
            crop: None,
        },
    );
    assert!(e.contains("train/c: class folder holds no image"), "{e}");
    std::fs::remove_dir(r.join("train/c")).unwrap();

    gray(&r.join("test/zebra/4.png"), 8, 8, 1);
    let e = err(
        r,
        &Prep {
            resize: Some([8, 8]),
            crop: None,
        },
    );
    assert!(e.contains("'zebra' is not a class of the training split"), "{e}");
    std::fs::remove_dir_all(r.join("test/zebra")).unwrap();

    let e = err(
        r,
        &Prep {
            resize: Some([4, 4]),
            crop: Some([5, 5]),
        },
    );
    assert!(e.contains("5x5 center crop does not fit 4x4"), "{e}");

    let empty = tempfile::tempdir().unwrap();
    let e = err(empty.path(), &Prep::default());
    assert!(
        e.contains("no data set found") && e.contains("image folder"),
        "{e}"
    );
}

/// CIFAR-10 records: label byte, then the red, green and blue planes.
fn cifar_batch(labels: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    for (k, &l) in labels.iter().enumerate() {
        out.push(l);
        for c in 0..3u8 {
            out.extend(std::iter::repeat_n(c * 100 + k as u8, 1024));
        }
    }
    out
}

#[test]
fn cifar10_binary() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for k in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{k}.bin")), cifar_batch(&[k, 9])).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), cifar_batch(&[3])).unwrap();
    assert_eq!(pare::data::source::detect(d.path()).unwrap(), Format::Cifar10);
    let s = load(d.path(), &Prep::default()).unwrap();
    assert_eq!(
        (s.train.len(), s.test.len(), s.train.sample_shape()),
        (10, 1, &[3, 32, 32][..])
    );
    assert_eq!((s.train.label(0), s.train.label(1), s.test.label(0)), (1, 9, 3));
    let img = s.train.image(1);
    assert_eq!(
        (img[0], img[1024], img[2048]),
        (1.0 / 255.0, 101.0 / 255.0, 201.0 / 255.0)
    );

    let mut cut = cifar_batch(&[1]);
    cut.pop();
    std::fs::write(dir.join("test_batch.bin"), cut).unwrap();
    let e = err(d.path(), &Prep::default());
    assert!(
        e.contains("test_batch.bin: 3072 bytes is not a whole number of CIFAR-10 records"),
        "{e}"
    );
    std::fs::write(dir.join("test_batch.bin"), cifar_batch(&[10])).unwrap();
    assert!(err(d.path(), &Prep::default()).contains("record 0 has label 10"));
}

fn npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(f)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

#[test]
fn numpy_arrays_channels_last_and_first() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    // x_train [2, 2, 2, 3] channels last (Keras), uint8; x_test [1, 3, 2, 2] float channels first.
    let x: Vec<u8> = (0..24).map(|v| v * 10).collect();
    npy(&r.join("x_train.npy"), &[2, 2, 2, 3], &x);
    npy(&r.join("y_train.npy"), &[2], &[0i64, 4]);
    npy(&r.join("x_test.npy"), &[1, 3, 2, 2], &[0.5f32; 12]);
    npy(&r.join("y_test.npy"), &[1], &[2i32]);
    assert_eq!(pare::data::source::detect(r).unwrap(), Format::Numpy);
    let s = load(r, &Prep::default()).unwrap();
    assert_eq!(
        (s.train.sample_shape(), s.train.num_classes()),
        (&[3, 2, 2][..], 5)
    );
    // First image's red plane is the channel-0 values at the four positions: 0, 30, 60, 90.
    let red: Vec<f32> = s.train.image(0)[..4]
        .iter()
        .map(|v| (v * 255.0).round())
        .collect();
    assert_eq!(red, vec![0.0, 30.0, 60.0, 90.0]);
    assert_eq!(s.test.image(0), &[0.5; 12]);

    npy(&r.join("y_test.npy"), &[2], &[2i32, 1]);
    let e = err(r, &Prep::default());
    assert!(
        e.contains("y_test.npy") && e.contains("labels of shape [2] for 1 images"),
        "{e}"
    );
    npy(&r.join("y_test.npy"), &[1], &[-1i32]);
    assert!(err(r, &Prep::default()).contains("label -1 is not a class id"));
}

#[test]
fn npz_archive() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("set.npz");
    let mut z = npyz::npz::NpzWriter::create(&path).unwrap();
    let mut put = |name: &str, shape: &[u64], data: Vec<u8>| {
        let mut w = z
            .array::<u8>(name, Default::default())
            .unwrap()
            .default_dtype()
            .shape(shape)
            .begin_nd()
            .unwrap();
        w.extend(data).unwrap();
        w.finish().unwrap();
    };
    put("x_train", &[3, 4, 4], vec![255; 48]);
    put("y_train", &[3], vec![0, 1, 2]);
    put("x_test", &[1, 4, 4], vec![0; 16]);
    put("y_test", &[1], vec![1]);
    drop(z);
    let s = load(&path, &Prep::default()).unwrap();
    assert_eq!(
        (s.train.len(), s.train.sample_shape(), s.train.num_classes()),
        (3, &[1, 4, 4][..], 3)
    );
    assert_eq!(s.train.image(0)[0], 1.0);

    std::fs::write(&path, b"PK\x03\x04 truncated").unwrap();
    assert!(err(&path, &Prep::default()).contains("set.npz: not an .npz archive"));
}

/// IDX sets take the same preparation (Fashion-MNIST resized to 32x32).
#[test]
fn fashion_mnist_resized() {
    let dir = pare::data::fashion::resolve_dir(None);
    let s = load(
        &dir,
        &Prep {
            resize: Some([32, 32]),
            crop: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.train.len(), s.test.sample_shape()), (60000, &[1, 32, 32][..]));
}
