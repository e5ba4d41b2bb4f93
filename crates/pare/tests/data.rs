//! Data: seeded orders and splits, augmentation, normalization, and the real Fashion-MNIST set.

use std::path::Path;

use pare::data::batch::make_batch;
use pare::data::{epoch_order, fashion, Augment, Dataset, InMemory};
use pare::ir::Normalize;

fn ramp() -> InMemory {
    // 4 images [1, 4, 4] with pixel value = column / 3.
    let px: Vec<f32> = (0..64).map(|i| (i % 4) as f32 / 3.0).collect();
    InMemory::new(vec![1, 4, 4], 2, px, vec![0, 1, 0, 1]).unwrap()
}

#[test]
fn epoch_orders_are_seeded_permutations() {
    let a = epoch_order(1000, 7, 3);
    assert_eq!(a, epoch_order(1000, 7, 3));
    assert_ne!(a, epoch_order(1000, 7, 4));
    assert_ne!(a, epoch_order(1000, 8, 3));
    let mut s = a.clone();
    s.sort_unstable();
    assert_eq!(s, (0..1000).collect::<Vec<_>>());
}

#[test]
fn batches_are_normalized_with_the_models_statistics() {
    let b = make_batch(&ramp(), &[1, 2], &Normalize::scalar(0.5, 0.25), None);
    assert_eq!(b.x.shape(), &[2, 1, 4, 4]);
    assert_eq!(b.labels, vec![1, 0]);
    let want = [-2.0, -2.0 / 3.0, 2.0 / 3.0, 2.0];
    assert!(
        b.x.data()[..4]
            .iter()
            .zip(want)
            .all(|(a, b)| (a - b).abs() < 1e-6),
        "{:?}",
        &b.x.data()[..4]
    );
}

/// One mean and deviation per channel of an image (torchvision's ImageNet normalization), in
/// a batch and back, and the same statistics given once for all channels.
#[test]
fn per_channel_statistics_apply_along_the_channel_axis() {
    // 2 images [3, 2, 2]: channel c holds the value c / 4 everywhere.
    let px: Vec<f32> = (0..24).map(|i| ((i / 4) % 3) as f32 / 4.0).collect();
    let d = InMemory::new(vec![3, 2, 2], 2, px.clone(), vec![0, 1]).unwrap();
    let norm = Normalize {
        mean: vec![0.0, 0.5, 1.0],
        std: vec![1.0, 0.5, 0.25],
    };
    let b = make_batch(&d, &[0, 1], &norm, None);
    let want: Vec<f32> = (0..24).map(|i| [0.0, -0.5, -2.0][(i / 4) % 3]).collect();
    assert_eq!(b.x.data(), &want[..]);
    let mut back = b.x.clone();
    norm.undo(&[3, 2, 2], back.data_mut());
    assert_eq!(back.data(), &px[..]);
    let shared = make_batch(&d, &[0, 1], &Normalize::scalar(0.5, 0.5), None);
    let per = make_batch(
        &d,
        &[0, 1],
        &Normalize {
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
        },
        None,
    );
    assert_eq!(shared.x, per.x);
}

#[test]
fn augmentation_is_seeded_and_flip_mirrors_columns() {
    let d = ramp();
    let norm = Normalize::default();
    let flip = Augment {
        crop_padding: 0,
        hflip: true,
        views: 0,
    };
    let flipped = (0..20)
        .map(|s| make_batch(&d, &[0], &norm, Some((&flip, s, None))).x)
        .find(|x| x.data()[0] == 1.0)
        .expect("some seed flips");
    assert_eq!(&flipped.data()[..4], &[1.0, 2.0 / 3.0, 1.0 / 3.0, 0.0]);
    let crop = Augment {
        crop_padding: 2,
        hflip: false,
        views: 0,
    };
    let a = make_batch(&d, &[0, 1, 2, 3], &norm, Some((&crop, 5, None)));
    assert_eq!(
        a.x,
        make_batch(&d, &[0, 1, 2, 3], &norm, Some((&crop, 5, None))).x
    );
    assert_eq!(a.x.shape(), &[4, 1, 4, 4]);
    // A shifted crop brings in zero padding somewhere.
    let any_shift = (0..20).any(|s| {
        make_batch(&d, &[0], &norm, Some((&crop, s, None)))
            .x
            .data()
            .contains(&0.0)
            && make_batch(&d, &[0], &norm, Some((&crop, s, None))).x != make_batch(&d, &[0], &norm, None).x
    });
    assert!(any_shift);
}

#[test]
fn fixed_views_repeat_every_views_epochs() {
    let mut aug = Augment {
        crop_padding: 2,
        hflip: false,
        views: 3,
    };
    assert_eq!(
        (0..7).map(|e| aug.view_of(e)).collect::<Vec<_>>(),
        [0, 1, 2, 0, 1, 2, 0].map(Some)
    );
    aug.views = 0;
    assert_eq!(aug.view_of(4), None, "a fresh view every epoch is not cacheable");
    aug.crop_padding = 0;
    assert_eq!(aug.view_of(4), Some(0), "unaugmented data is view 0");
    let d = ramp();
    let b = make_batch(&d, &[0], &Normalize::default(), Some((&aug, 1, None)));
    assert_eq!(
        b.view,
        Some(0),
        "an Augment that does nothing leaves the batch unaugmented"
    );
}

#[test]
fn inconsistent_data_is_rejected() {
    assert!(InMemory::new(vec![1, 2, 2], 2, vec![0.0; 7], vec![0, 1])
        .unwrap_err()
        .to_string()
        .contains("do not make"));
    assert!(InMemory::new(vec![1, 1, 1], 2, vec![0.0; 2], vec![0, 5])
        .unwrap_err()
        .to_string()
        .contains("label 5"));
}

#[test]
fn missing_data_directory_says_how_to_get_the_set() {
    let e = fashion::load(Path::new("/nonexistent/fmnist"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("/nonexistent/fmnist") && e.contains("dataset-fashion-mnist") && e.contains("PARE_DATA"),
        "{e}"
    );
}

/// Integration test on the real set (installed by scripts/setup.sh).
#[test]
fn real_fashion_mnist_loads() {
    let dir = fashion::resolve_dir(None);
    let s = fashion::load(&dir).unwrap_or_else(|e| panic!("{e} (run scripts/setup.sh)"));
    assert_eq!((s.train.len(), s.test.len()), (60000, 10000));
    assert_eq!(s.train.sample_shape(), &[1, 28, 28]);
    let mut counts = [0usize; 10];
    (0..s.test.len()).for_each(|i| counts[s.test.label(i) as usize] += 1);
    assert_eq!(counts, [1000; 10]);
    let n = fashion::pixel_stats(&s.train);
    assert!(
        (n.mean[0] - 0.2860).abs() < 1e-3 && (n.std[0] - 0.3530).abs() < 1e-3,
        "{n:?}"
    );
}

/// A data directory whose splits cannot be used together is refused when it is loaded, naming
/// the file: an empty test set, or test images of another size than the training images.
#[test]
fn unusable_splits_are_refused_when_loaded() {
    use pare::data::idx::encode_idx;
    let write = |dir: &std::path::Path, stem: &str, dims: &[usize]| {
        let n: usize = dims.iter().product();
        std::fs::write(dir.join(stem), encode_idx(dims, &vec![0; n])).unwrap();
    };
    let split = |test_images: &[usize]| {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "train-images-idx3-ubyte", &[4, 28, 28]);
        write(dir.path(), "train-labels-idx1-ubyte", &[4]);
        write(dir.path(), "t10k-images-idx3-ubyte", test_images);
        write(dir.path(), "t10k-labels-idx1-ubyte", &[test_images[0]]);
        pare::data::fashion::load(dir.path())
            .map(drop)
            .map_err(|e| e.to_string())
    };
    assert!(split(&[2, 28, 28]).is_ok());
    let e = split(&[0, 28, 28]).unwrap_err();
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("holds no images"),
        "{e}"
    );
    let e = split(&[2, 32, 32]).unwrap_err();
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("[1, 32, 32]") && e.contains("[1, 28, 28]"),
        "{e}"
    );
}

/// In `arch.json` one shared value stays a number and per-channel values are lists; a graph
/// refuses per-channel values that do not match its image channels, and unequal lists.
#[test]
fn normalization_is_written_as_numbers_or_lists_and_checked() {
    use pare::ir::graph::ops::conv;
    use pare::ir::GraphBuilder;
    let shared = serde_json::to_string(&Normalize::scalar(0.5, 0.25)).unwrap();
    assert_eq!(shared, r#"{"mean":0.5,"std":0.25}"#);
    let per: Normalize = serde_json::from_str(r#"{"mean":[0.1,0.2,0.3],"std":[1,2,3]}"#).unwrap();
    assert_eq!(per.std, [1.0, 2.0, 3.0]);
    assert_eq!(
        serde_json::to_string(&per).unwrap(),
        r#"{"mean":[0.1,0.2,0.3],"std":[1.0,2.0,3.0]}"#
    );
    let graph = |shape: Vec<usize>, channels, norm: Normalize| {
        let mut b = GraphBuilder::new(shape);
        b.then("conv", conv(channels, 2, 1, 1, 0, true));
        let mut g = b.finish().unwrap();
        g.input.normalize = norm;
        g.shapes().map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(graph(vec![3, 4, 4], 3, per.clone()).is_ok());
    for (shape, channels, norm, says) in [
        (vec![1, 4, 4], 1, per.clone(), "not an image of 3 channels"),
        (
            vec![3, 4, 4],
            3,
            Normalize {
                mean: vec![0.1, 0.2, 0.3],
                std: vec![1.0],
            },
            "3 means and 1 deviations",
        ),
        (
            vec![3, 4, 4],
            3,
            Normalize {
                mean: vec![0.1, 0.2, 0.3],
                std: vec![1.0, 0.0, 1.0],
            },
            "std must be positive",
        ),
    ] {
        let e = graph(shape, channels, norm).unwrap_err();
        assert!(e.contains(says), "{e}");
    }
}
