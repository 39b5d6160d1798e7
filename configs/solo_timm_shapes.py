# The embedded demo: configs/solo_timm.py on the generated shapes dataset
# (python -m lit_mmdet.datasets.shapes --out data/shapes), sized for a 2-core CPU:
# timm resnet18 from scratch, a light SOLO head (64 channels, 3 convs, grids 24..8),
# 160 px images, batch 4, AdamW with linear warmup and cosine decay.
_base_ = './solo_timm.py'

dataset_type = 'CocoDataset'
data_root = 'data/shapes/'
classes = ('circle', 'square', 'triangle')

model = dict(
    backbone=dict(model_name='resnet18', pretrained=False),
    neck=dict(out_channels=64),
    mask_head=dict(
        num_classes=len(classes),
        in_channels=64,
        feat_channels=64,
        stacked_convs=3,
        scale_ranges=((1, 32), (16, 64), (32, 128), (64, 256), (128, 512)),
        num_grids=[24, 20, 16, 12, 8],
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True)),
    test_cfg=dict(nms_pre=200, score_thr=0.1, max_per_img=20))

img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
img_scale = (160, 160)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=img_scale,
        flip=False,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='Pad', size_divisor=32),
            dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img']),
        ])
]
data = dict(
    samples_per_gpu=4,
    workers_per_gpu=1,
    persistent_workers=True,
    train=dict(
        type=dataset_type,
        classes=classes,
        ann_file=data_root + 'annotations/instances_train.json',
        img_prefix=data_root + 'train/',
        pipeline=train_pipeline),
    val=dict(
        type=dataset_type,
        classes=classes,
        ann_file=data_root + 'annotations/instances_val.json',
        img_prefix=data_root + 'val/',
        pipeline=test_pipeline),
    test=dict(
        type=dataset_type,
        classes=classes,
        ann_file=data_root + 'annotations/instances_val.json',
        img_prefix=data_root + 'val/',
        pipeline=test_pipeline))

optimizer = dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05)
optimizer_config = dict(_delete_=True, grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(
    _delete_=True,
    policy='CosineAnnealing',
    warmup='linear',
    warmup_iters=100,
    warmup_ratio=0.01,
    min_lr_ratio=0.01,
    by_epoch=False)
runner = dict(type='EpochBasedRunner', max_epochs=24)
# mmdet 2.x SOLO predicts masks only (its boxes are placeholders): evaluate segm, as mmdet's SOLO results do
evaluation = dict(interval=12, metric=['segm'])
checkpoint_config = dict(interval=12, max_keep_ckpts=2)
log_config = dict(interval=10, hooks=[dict(type='TextLoggerHook')])
